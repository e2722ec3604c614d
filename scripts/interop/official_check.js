#!/usr/bin/env node
// Checks a UserSig with the official npm generator (tls-sig-api-v2 1.0.2) itself.
//
// usage: official_check.js APPID KEY USER SIG
//
// The package has no verify function (nor an exported decoder), so this decodes the ticket the way
// the package encodes it (alphabet, base64, zlib, JSON), recomputes TLS.sig with the package's
// own HMAC routine (Api.prototype._hmacsha256), and mints the same ticket with the package, clock
// fixed at the ticket's TLS.time, to compare the decoded JSON objects (fields, values, JSON types).
// Expiry is not checked. Prints `official node: ok` and exits 0, or prints why and exits 1.
'use strict';
const zlib = require('zlib');
const { Api } = require('tls-sig-api-v2');

function decode(sig) {
  const b64 = sig.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '=');
  return JSON.parse(zlib.inflateSync(Buffer.from(b64, 'base64')).toString('utf8'));
}

function canonical(obj) {
  return JSON.stringify(Object.keys(obj).sort().map((k) => [k, typeof obj[k], obj[k]]));
}

const args = process.argv.slice(2);
if (args.length !== 4) {
  console.error('usage: official_check.js APPID KEY USER SIG');
  process.exit(2);
}
const [appid, key, user, sig] = [Number(args[0]), args[1], args[2], args[3]];
const doc = decode(sig);
if (doc['TLS.sdkappid'] !== appid || doc['TLS.identifier'] !== user) {
  console.log(`official node: ticket is for ${doc['TLS.sdkappid']}/${JSON.stringify(doc['TLS.identifier'])}`);
  process.exit(1);
}
const api = new Api(appid, key);
const userbuf = doc['TLS.userbuf'];
const mac = api._hmacsha256(user, doc['TLS.time'], doc['TLS.expire'], userbuf === undefined ? null : userbuf);
if (mac !== doc['TLS.sig']) {
  console.log(`official node: TLS.sig ${doc['TLS.sig']} but the package computes ${mac}`);
  process.exit(1);
}
Date.now = () => doc['TLS.time'] * 1000;
const again = userbuf === undefined
  ? api.genUserSig(user, doc['TLS.expire'])
  : api.genSig(user, doc['TLS.expire'], Buffer.from(userbuf, 'base64'));
const theirs = decode(again);
if (canonical(theirs) !== canonical(doc)) {
  console.log('official node: decoded ticket differs from the package\'s own\n' +
    `  ours:   ${canonical(doc)}\n  theirs: ${canonical(theirs)}`);
  process.exit(1);
}
console.log('official node: ok');
