#!/usr/bin/env node
// Prints a UserSig minted by the official npm generator (tls-sig-api-v2 1.0.2).
//
// usage: mint.js APPID KEY USER EXPIRE [--time UNIX_SECS] [--userbuf TEXT]
//
// --time fixes the generator's clock (it reads Date.now()); --userbuf calls genSig(user, expire,
// Buffer) as genPrivateMapKey does (the generator base64-encodes the bytes and signs the base64
// text). Run it with .interop/bin/node (scripts/interop-setup.sh writes it; it sets NODE_PATH).
'use strict';

let TLSSigAPIv2;
try {
  TLSSigAPIv2 = require('tls-sig-api-v2');
} catch (e) {
  console.error('mint.js: the npm package tls-sig-api-v2 is not requirable: ' +
    'run scripts/interop-setup.sh and use .interop/bin/node (' + e.message + ')');
  process.exit(2);
}

function usage(msg) {
  console.error('mint.js: ' + msg);
  console.error('usage: mint.js APPID KEY USER EXPIRE [--time UNIX_SECS] [--userbuf TEXT]');
  process.exit(2);
}

function integer(name, s) {
  if (!/^-?[0-9]+$/.test(s)) usage(name + ' must be an integer, got ' + JSON.stringify(s));
  return Number(s);
}

const pos = [];
let time = null;
let userbuf = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--time') time = integer('--time', argv[++i] ?? '');
  else if (argv[i] === '--userbuf') {
    if (i + 1 >= argv.length) usage('--userbuf needs a value');
    userbuf = argv[++i];
  } else pos.push(argv[i]);
}
if (pos.length !== 4) usage('expected 4 positional arguments, got ' + pos.length);

const [appid, key, user, expire] = [integer('APPID', pos[0]), pos[1], pos[2], integer('EXPIRE', pos[3])];
if (time !== null) {
  Date.now = () => time * 1000;
}
const api = new TLSSigAPIv2.Api(appid, key);
const sig = userbuf === null
  ? api.genUserSig(user, expire)
  : api.genSig(user, expire, Buffer.from(userbuf, 'utf8'));
console.log(sig);
