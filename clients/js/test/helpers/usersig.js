// TLSSigAPIv2 for the tests (contract §2): HMAC-SHA256 over the content lines, the JSON zlib-deflated,
// base64 with + / = turned into * - _. Cheap enough to mint a ticket of a few seconds per test.
import { createHmac } from "node:crypto";
import { deflateSync, inflateSync } from "node:zlib";

/** Seconds on the real clock, immune to a test that fakes Date.now. */
export function realNowSeconds() {
  return Math.floor((performance.timeOrigin + performance.now()) / 1000);
}

export function genUserSig({ sdkAppId, key, userID, expire = 86400, time = realNowSeconds() }) {
  const content =
    `TLS.identifier:${userID}\n` + `TLS.sdkappid:${sdkAppId}\n` + `TLS.time:${time}\n` + `TLS.expire:${expire}\n`;
  const sig = createHmac("sha256", key).update(content).digest("base64");
  const doc = {
    "TLS.ver": "2.0",
    "TLS.identifier": userID,
    "TLS.sdkappid": sdkAppId,
    "TLS.expire": expire,
    "TLS.time": time,
    "TLS.sig": sig,
  };
  return deflateSync(Buffer.from(JSON.stringify(doc)))
    .toString("base64")
    .replace(/\+/g, "*")
    .replace(/\//g, "-")
    .replace(/=/g, "_");
}

export function decodeUserSig(userSig) {
  const b64 = userSig.replace(/\*/g, "+").replace(/-/g, "/").replace(/_/g, "=");
  return JSON.parse(inflateSync(Buffer.from(b64, "base64")).toString("utf8"));
}
