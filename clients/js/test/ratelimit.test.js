// Contract §16 as the SDK sees it: a request answered 7008 (max_requests_per_sec) just rejects, the
// session stays; a close 1008 (max_frames_per_sec) is an `error` event, then a link loss with the
// backoff. The real limits run against a gateway started with small §16 limits; the 7008 answer is
// also forged by the proxy so the SDK's side is tested on its own (1008 is forged in
// reconnect.test.js).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ErrorCode, LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, rejection, uniqueUser, waitFor } from "./helpers/util.js";

let gw;
let limited; // a gateway with small §16 limits
const make = clientFactory();
const closers = [];

before(async () => {
  gw = await startGateway();
  closers.push(() => gw.close());
  limited = await startGateway({ settings: { max_requests_per_sec: 5, max_frames_per_sec: 10 } });
  closers.push(() => limited.close());
});
after(async () => {
  make.destroyAll();
  for (const c of closers.reverse()) await c();
});
afterEach(() => make.destroyAll());

describe("rate limits", () => {
  test("a request answered 7008 rejects with 7008; the session and the link stay", async () => {
    const proxy = await startProxy(gw.wsPort);
    closers.push(() => proxy.close());
    const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId });
    const rec = record(client);
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    proxy.rewriteServerText = (text) => {
      const m = JSON.parse(text);
      if (m.type === "response" && m.data && "delivered" in m.data) {
        return JSON.stringify({ type: "response", seq: m.seq, code: 7008, desc: "API call frequency limit" });
      }
      return undefined;
    };
    const err = await rejection(client.send("bob", "x"));
    assert.equal(err.code, ErrorCode.RATE_LIMITED);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getNetState(), "connected");
    proxy.rewriteServerText = null;
    assert.deepEqual(await client.send("bob", "y"), { delivered: 0 });
    assert.equal(proxy.accepted, 1);
    assert.equal(rec.of("error").length, 0);
  });

  test("the real max_requests_per_sec: the calls over the budget reject with 7008, the rest go through", async () => {
    const client = make({ url: limited.url, sdkAppId: limited.sdkAppId });
    const alice = uniqueUser("alice");
    await client.login(alice, limited.sig(alice));
    // rate 5: a burst of twice that (§16), one of it spent by the login: 9 go through, the rest 7008
    const results = await Promise.all(Array.from({ length: 15 }, (_, i) => client.send("bob", `m${i}`).then(() => 0, (e) => e.code)));
    assert.equal(results.filter((c) => c === 0).length, 9, JSON.stringify(results));
    assert.ok(results.includes(ErrorCode.RATE_LIMITED), JSON.stringify(results));
    assert.ok(results.includes(0), JSON.stringify(results));
    assert.ok(results.every((c) => c === 0 || c === ErrorCode.RATE_LIMITED), JSON.stringify(results));
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getNetState(), "connected");
  });

  test("the real max_frames_per_sec: close 1008, an error event, then a re-login after the backoff", async () => {
    const proxy = await startProxy(limited.wsPort);
    closers.push(() => proxy.close());
    const client = make({ url: proxy.url, sdkAppId: limited.sdkAppId, minReconnectDelayMs: 200, maxReconnectDelayMs: 400 });
    const rec = record(client);
    const alice = uniqueUser("alice");
    await client.login(alice, limited.sig(alice));
    const pings = Array.from({ length: 40 }, () => client.ping().catch((e) => e.code));
    const err = await rec.wait("error");
    assert.equal(err.code, ErrorCode.CLOSE_RATE_LIMIT);
    await Promise.all(pings);
    await waitFor(() => proxy.accepted >= 2 && client.getNetState() === "connected", { what: "the re-login" });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(rec.of("loginStatusChanged").length, 2);
  });
});
