// The SDK's codecs against the golden bytes shared with the Rust tests
// (proto/tests/fixtures/bincode.json, checked against imgate_proto by proto/tests/bincode_fixture.rs),
// the refresh-lead formula of rule 6, and the test helpers' TLSSigAPIv2 against the official vector.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { refreshLeadMs } from "../src/client.js";
import { BincodeError, DecodeError, decodeServer, encodeClient } from "../src/index.js";
import { REPO } from "./helpers/gateway.js";
import { decodeUserSig, genUserSig } from "./helpers/usersig.js";

const fixture = JSON.parse(readFileSync(`${REPO}/proto/tests/fixtures/bincode.json`, "utf8"));
const unhex = (s) => Uint8Array.from(s.split(/\s+/).filter(Boolean), (b) => parseInt(b, 16));
const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join(" ");

describe("bincode golden bytes (shared with imgate_proto)", () => {
  test("the fixture covers every client message type and every server message and data variant", () => {
    const types = new Set(fixture.client.map((c) => JSON.parse(c.json).type));
    assert.deepEqual([...types].sort(), ["get_login_status", "get_login_user", "login", "logout", "ping", "refresh_sig", "send"]);
    const server = new Set(fixture.server.map((c) => JSON.parse(c.json).type));
    assert.deepEqual([...server].sort(), ["kicked_offline", "message", "response", "user_sig_expired"]);
  });

  for (const c of fixture.client) {
    test(`encodes ${c.json}`, () => {
      const msg = JSON.parse(c.json);
      assert.equal(hex(encodeClient(msg, "bincode")), c.hex);
      assert.deepEqual(JSON.parse(encodeClient(msg, "json")), msg);
    });
  }

  for (const c of fixture.server) {
    test(`decodes ${c.json}`, () => {
      const fromJson = decodeServer(c.json);
      const fromBincode = decodeServer(unhex(c.hex));
      assert.deepEqual(fromBincode, fromJson);
      assert.deepEqual(decodeServer(unhex(c.hex).buffer), fromJson, "an ArrayBuffer (browser binaryType)");
      assert.deepEqual(decodeServer(Buffer.from(unhex(c.hex))), fromJson, "a Node Buffer");
      const wire = JSON.parse(c.json);
      if (wire.type === "response") assert.equal("data" in fromBincode, "data" in wire, "no data on failure, null on logout");
    });
  }

  for (const c of fixture.server_lenient) {
    test(`accepts a longer varint: ${c.why}`, () => {
      assert.deepEqual(decodeServer(unhex(c.hex)), decodeServer(c.json));
    });
  }

  for (const c of fixture.server_invalid) {
    test(`refuses ${c.why}`, () => {
      assert.throws(() => decodeServer(unhex(c.hex)), BincodeError);
    });
  }
});

describe("JSON decoding", () => {
  for (const [why, text] of [
    ["not JSON", "{"],
    ["an array", "[]"],
    ["an unknown type", '{"type":"hello"}'],
    ["a response without code", '{"type":"response","seq":1,"desc":"ok"}'],
    ["a negative seq", '{"type":"response","seq":-1,"code":0,"desc":"ok"}'],
    ["a bad kick reason", '{"type":"kicked_offline","reason":"because","by_platform":null}'],
    ["a bad platform", '{"type":"message","from":"a","from_platform":"ios","payload":"x"}'],
    ["a payload that is not a string", '{"type":"message","from":"a","from_platform":null,"payload":1}'],
  ]) {
    test(`refuses ${why}`, () => assert.throws(() => decodeServer(text), DecodeError));
  }
  test("unknown keys are ignored", () => {
    assert.deepEqual(decodeServer('{"type":"user_sig_expired","extra":1}'), { type: "user_sig_expired" });
  });
});

describe("rule 6: the refresh lead", () => {
  test("min(max(90 s, L/10), L/2)", () => {
    assert.equal(refreshLeadMs(3_000), 1_500); // short tickets: halfway
    assert.equal(refreshLeadMs(179_000), 89_500);
    assert.equal(refreshLeadMs(180_000), 90_000);
    assert.equal(refreshLeadMs(600_000), 90_000); // 10 minutes: 90 s before
    assert.equal(refreshLeadMs(900_000), 90_000);
    assert.equal(refreshLeadMs(86_400_000), 8_640_000); // a day: L/10
    assert.equal(refreshLeadMs(180 * 86_400_000), 18 * 86_400_000);
  });
});

describe("the tests' TLSSigAPIv2", () => {
  test("matches the official generator's vector (FACTS.md)", () => {
    const sig = genUserSig({
      sdkAppId: 1400000000,
      key: "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e",
      userID: "xiaojun",
      expire: 86400,
      time: 1700000000,
    });
    const doc = decodeUserSig(sig);
    assert.equal(doc["TLS.sig"], "SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc=");
    const official = decodeUserSig(
      "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpQJlLMxM4IIlmbkgIUNzNMXFmekg44P93EzccsOcA0qT8yOKnfwLksLcjNPcnNNMzb0Ccg1Sq6IMs1LDPH1ywpJtlWoBk68y0A__",
    );
    assert.deepEqual(doc, official);
  });
});
