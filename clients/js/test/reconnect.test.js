// Contract §13 rule 4: link loss → netState "connecting", status stays 1, reconnection with
// full-jitter exponential backoff and an automatic re-login (same user, platform, instance id);
// calls wait for the link up to requestTimeoutMs, then 9508; the app-level ping; closes 1001 (a real
// gateway restart), 4000, 4001 (a real idle timeout), 4003, 1008; re-logins answered 70169 / 7008.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ErrorCode, LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, rejection, sleep, uniqueUser, waitFor } from "./helpers/util.js";

let gw;
const make = clientFactory();
const closers = [];

before(async () => {
  gw = await startGateway({ app: { policy: "multi", max_instances: { web: 5 } } });
  closers.push(() => gw.close());
});
after(async () => {
  make.destroyAll();
  for (const c of closers.reverse()) await c();
});
afterEach(() => make.destroyAll());

async function proxied(gateway, options = {}) {
  const proxy = await startProxy(gateway.wsPort);
  closers.push(() => proxy.close());
  const client = make({ url: proxy.url, sdkAppId: gateway.sdkAppId, ...options });
  return { proxy, client, rec: record(client) };
}

/** A logged-in client behind a proxy, and a peer on another socket to send to it. */
async function loggedIn(options = {}) {
  const p = await proxied(gw, options);
  const user = uniqueUser("alice");
  await p.client.login(user, gw.sig(user));
  return { ...p, user };
}

const logins = (proxy) => proxy.sentJson().filter((m) => m.type === "login");

describe("link loss and the automatic re-login", () => {
  test("a cut link (1006): connecting, status stays 1, re-login with the same user, platform and instance id", async () => {
    const { client, proxy, rec, user } = await loggedIn({ platform: "mac", instanceId: "desk-1" });
    const statuses = [];
    client.on("netStateChanged", () => statuses.push(client.getLoginStatus()));
    rec.events.length = 0;
    proxy.cutAll();
    await waitFor(() => client.getNetState() === "connecting", { what: "connecting" });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getLoginUser(), user);
    await waitFor(() => client.getNetState() === "connected", { what: "the reconnection" });
    assert.deepEqual(rec.names(), ["netStateChanged", "netStateChanged"], "no loginStatusChanged nor kickedOffline");
    assert.deepEqual(rec.of("netStateChanged"), [{ state: "connecting" }, { state: "connected" }]);
    assert.deepEqual(statuses, [1, 1]);
    const [first, second] = logins(proxy);
    assert.equal(logins(proxy).length, 2);
    for (const k of ["user_id", "user_sig", "platform", "instance_id", "sdk_app_id"]) assert.equal(second[k], first[k], k);
    assert.equal(second.platform, "mac");
    assert.equal(second.instance_id, "desk-1");
    const on = await gw.online(user);
    assert.equal(on.instances.length, 1);
    assert.equal(on.instances[0].instance_id, "desk-1");
  });

  test("calls made while the link is down wait for it and go out after the re-login", async () => {
    const { client, proxy } = await loggedIn();
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const bob = uniqueUser("bob");
    await peer.login(bob, gw.sig(bob));
    const got = record(peer);
    proxy.refuse(true);
    proxy.cutAll();
    await waitFor(() => client.getNetState() === "connecting");
    const sent = client.send(bob, "sent while offline");
    const ping = client.ping();
    await sleep(300);
    proxy.refuse(false);
    assert.deepEqual(await sent, { delivered: 1 });
    assert.ok((await ping).serverTimeMs > 0);
    await got.wait("message");
    assert.equal(got.of("message")[0].payload, "sent while offline");
    const types = proxy.sentJson().map((m) => m.type);
    assert.ok(types.lastIndexOf("login") < types.lastIndexOf("send"), "the call went out after the re-login");
  });

  test("a call that finds no link for requestTimeoutMs rejects with 9508; the session stays", async () => {
    const { client, proxy } = await loggedIn({ requestTimeoutMs: 800 });
    proxy.refuse(true);
    proxy.cutAll();
    await waitFor(() => client.getNetState() === "connecting");
    const t0 = performance.now();
    const err = await rejection(client.send("bob", "never"));
    const waited = performance.now() - t0;
    assert.equal(err.code, ErrorCode.NOT_CONNECTED);
    assert.ok(waited >= 750 && waited < 1500, `waited ${waited} ms`);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getNetState(), "connecting");
    proxy.refuse(false);
    await waitFor(() => client.getNetState() === "connected", { what: "the reconnection" });
  });

  test("a call on the wire when the link drops rejects with 9508 at once (it may have been applied)", async () => {
    const { client, proxy } = await loggedIn({ requestTimeoutMs: 5000 });
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "response" ? null : undefined);
    const sent = client.send("bob", "in flight");
    await waitFor(() => proxy.sentJson().some((m) => m.type === "send"), { what: "the send frame" });
    const t0 = performance.now();
    proxy.rewriteServerText = null;
    proxy.cutAll();
    const err = await rejection(sent);
    assert.equal(err.code, ErrorCode.NOT_CONNECTED);
    assert.ok(performance.now() - t0 < 1000, "not after requestTimeoutMs");
    await waitFor(() => client.getNetState() === "connected", { what: "the reconnection" });
  });
});

describe("backoff", () => {
  const MIN = 50;
  const MAX = 800;
  const upper = (n) => Math.min(MAX, MIN + MIN * 2 ** n);
  const SLACK = 100; // connect + refuse + close event on a loaded machine

  /** Cuts the link with the proxy refusing, and returns the waits before each of `count` attempts. */
  async function cutAndTime(proxy, count) {
    const before = proxy.acceptTimes.length;
    proxy.refuse(true);
    const t0 = performance.now();
    proxy.cutAll();
    await waitFor(() => proxy.acceptTimes.length >= before + count, { timeout: 15000, what: `${count} attempts` });
    const t = [t0, ...proxy.acceptTimes.slice(before, before + count)];
    return t.slice(1).map((x, i) => x - t[i]);
  }

  test("attempt n waits min(max, min + random[0, min * 2^n]), n from 0", async () => {
    const { client, proxy } = await loggedIn({ minReconnectDelayMs: MIN, maxReconnectDelayMs: MAX });
    const waits = await cutAndTime(proxy, 7);
    waits.forEach((w, n) => {
      assert.ok(w >= MIN - 5, `attempt ${n}: waited ${w.toFixed(0)} ms < min`);
      assert.ok(w <= upper(n) + SLACK, `attempt ${n}: waited ${w.toFixed(0)} ms > ${upper(n)}`);
    });
    // full jitter: the waits are spread, not pinned to either end of their ranges
    const inside = waits.filter((w, n) => n >= 1 && w > MIN + 25 && w < upper(n) - 25);
    assert.ok(inside.length >= 1, `no jitter: ${waits.map((w) => w.toFixed(0)).join(", ")}`);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    proxy.refuse(false);
    await waitFor(() => client.getNetState() === "connected", { timeout: 3000, what: "the reconnection" });
  });

  test("the first wait after a cut is within [min, 2 min]", async () => {
    const { client, proxy } = await loggedIn({ minReconnectDelayMs: 200, maxReconnectDelayMs: 5000 });
    const t0 = performance.now();
    proxy.cutAll();
    await waitFor(() => proxy.accepted >= 2, { what: "the retry" });
    const w = proxy.acceptTimes[1] - t0;
    assert.ok(w >= 195 && w <= 400 + SLACK, `waited ${w}`);
    await waitFor(() => client.getNetState() === "connected");
  });

  test("n resets after a re-login that stays up 5 s", async () => {
    const { client, proxy } = await loggedIn({ minReconnectDelayMs: MIN, maxReconnectDelayMs: MAX });
    await cutAndTime(proxy, 6); // n is 6 now: the next wait could be up to 800 ms
    proxy.refuse(false);
    await waitFor(() => client.getNetState() === "connected", { timeout: 3000, what: "the reconnection" });
    await sleep(5200);
    const waits = await cutAndTime(proxy, 3);
    waits.forEach((w, n) => assert.ok(w <= upper(n) + SLACK, `after the reset, attempt ${n} waited ${w.toFixed(0)} ms`));
    proxy.refuse(false);
    await waitFor(() => client.getNetState() === "connected", { timeout: 3000 });
  });
});

describe("the app-level ping", () => {
  test("pings after pingIntervalMs of silence; an unanswered ping (a black hole) is a link loss", async () => {
    const { client, proxy, rec } = await loggedIn({ pingIntervalMs: 300, requestTimeoutMs: 500 });
    await sleep(1000);
    const pings = proxy.sentJson().filter((m) => m.type === "ping").length;
    assert.ok(pings >= 2 && pings <= 4, `${pings} pings in 1 s at a 300 ms interval`);
    assert.equal(proxy.accepted, 1);
    proxy.blackholeAll();
    const t0 = performance.now();
    await waitFor(() => client.getNetState() === "connecting", { timeout: 2000, what: "the dead link to be noticed" });
    const noticed = performance.now() - t0;
    assert.ok(noticed < 300 + 500 + 300, `noticed after ${noticed} ms`);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    await waitFor(() => client.getNetState() === "connected", { what: "the re-login on a new link" });
    assert.equal(proxy.accepted, 2);
    assert.equal(rec.of("loginStatusChanged").length, 2, "only the first login's");
  });

  test("inbound frames postpone the ping", async () => {
    const { client, proxy, user } = await loggedIn({ pingIntervalMs: 400 });
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const bob = uniqueUser("bob");
    await peer.login(bob, gw.sig(bob));
    for (let i = 0; i < 8; i++) {
      await peer.send(user, `keepalive ${i}`);
      await sleep(100);
    }
    assert.equal(proxy.sentJson().filter((m) => m.type === "ping").length, 0);
    assert.equal(client.getNetState(), "connected");
  });
});

describe("close codes", () => {
  for (const code of [1001, 4000, 4003, 1008]) {
    test(`a close ${code} is a link loss: reconnect and log in again${code === 1008 ? " (after an error event)" : ""}`, async () => {
      const { client, proxy, rec } = await loggedIn();
      proxy.injectClose(code, code === 1008 ? "rate limit" : "");
      await waitFor(() => proxy.accepted >= 2 && client.getNetState() === "connected", { what: "the reconnection" });
      assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
      assert.equal(logins(proxy).length, 2);
      if (code === 1008) assert.deepEqual(rec.of("error"), [{ code: 1008, desc: "rate limit" }]);
      else assert.equal(rec.of("error").length, 0);
      assert.equal(rec.of("kickedOffline").length, 0);
    });
  }

  for (const code of [ErrorCode.PRESENCE_UNAVAILABLE, ErrorCode.RATE_LIMITED]) {
    test(`a re-login answered ${code} is retried with the backoff`, async () => {
      const { client, proxy, rec } = await loggedIn({ minReconnectDelayMs: 50 });
      let refused = 0;
      proxy.rewriteServerText = (text) => {
        const m = JSON.parse(text);
        if (m.type === "response" && m.data?.expire_at && m.data.user_id && refused < 2) {
          refused += 1;
          return JSON.stringify({ type: "response", seq: m.seq, code, desc: "try again" });
        }
        return undefined;
      };
      proxy.cutAll();
      await waitFor(() => refused === 2 && client.getNetState() === "connected", { what: "two refusals, then the re-login" });
      assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
      assert.equal(logins(proxy).length, 4);
      assert.ok(proxy.accepted >= 4, "each retry on a new link");
      assert.equal(rec.of("error").length, 0);
      assert.equal(rec.of("loginStatusChanged").length, 2);
    });
  }
});

describe("a real idle timeout (4001)", () => {
  let idle;
  before(async () => {
    idle = await startGateway({ settings: { idle_timeout_secs: 2, ping_interval_secs: 30 } });
    closers.push(() => idle.close());
  });

  test("without app-level pings the gateway closes 4001 after its idle timeout; the SDK logs in again", async () => {
    const { client, proxy, rec } = await proxied(idle, { pingIntervalMs: 60000 });
    const user = uniqueUser("idle");
    await client.login(user, idle.sig(user));
    await waitFor(() => proxy.accepted >= 2 && client.getNetState() === "connected", { timeout: 5000, what: "4001 and the reconnection" });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(rec.of("loginStatusChanged").length, 2);
  });

  test("app-level pings keep a quiet session past the gateway's idle timeout", async () => {
    const { client, proxy } = await proxied(idle, { pingIntervalMs: 500 });
    const user = uniqueUser("idle");
    await client.login(user, idle.sig(user));
    await sleep(3000);
    assert.equal(proxy.accepted, 1, "never closed 4001");
    assert.equal(client.getNetState(), "connected");
  });
});

describe("a gateway restart", () => {
  let rs;
  before(async () => {
    rs = await startGateway();
    closers.push(() => rs.close());
  });

  test("SIGTERM closes 1001; the SDK logs in again on the new process (same port); calls meanwhile wait", async () => {
    const client = make({ url: rs.url, sdkAppId: rs.sdkAppId, requestTimeoutMs: 4000, minReconnectDelayMs: 100 });
    const rec = record(client);
    const user = uniqueUser("rs");
    await client.login(user, rs.sig(user));
    let during;
    const code = await rs.restart({
      between: async () => {
        await waitFor(() => client.getNetState() === "connecting", { what: "the 1001 close" });
        during = client.ping();
        await sleep(300);
      },
    });
    assert.equal(code, 0, "the gateway exits 0 on SIGTERM");
    await waitFor(() => client.getNetState() === "connected", { timeout: 5000, what: "the re-login on the new process" });
    assert.ok((await during).serverTimeMs > 0);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal((await rs.online(user)).status, "Online");
    assert.equal(rec.of("loginStatusChanged").length, 2);
    assert.equal(rec.of("kickedOffline").length, 0);
  });

  test("a re-login refused for another reason (the app's key changed: 70009): status 3 and an error", async () => {
    const client = make({ url: rs.url, sdkAppId: rs.sdkAppId, minReconnectDelayMs: 100 });
    const rec = record(client);
    const user = uniqueUser("rs");
    await client.login(user, rs.sig(user));
    await rs.restart({ key: "f".repeat(64) });
    const err = await rec.wait("error", { timeout: 5000 });
    assert.equal(err.code, ErrorCode.USER_SIG_WRONG_KEY);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getNetState(), "disconnected");
    assert.equal(client.getLoginUser(), "");
    assert.deepEqual(rec.of("loginStatusChanged").at(-1), { status: 3, prev: 1 });
    await sleep(500);
    assert.equal(client.getNetState(), "disconnected", "no further attempts");
  });
});
