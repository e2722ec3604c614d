// Contract §13 rule 5: a kick (kicked_offline, or a close 4501/4502 without it) emits kickedOffline
// exactly once, status 3, and the SDK never reconnects or logs in by itself; a re-login answered
// 70052 is an admin kick; events of a socket the SDK abandoned (its own old socket's `replaced` kick)
// are ignored.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import WebSocket from "ws";
import { LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, rejection, sleep, uniqueUser, waitFor } from "./helpers/util.js";

let gw;
const make = clientFactory();
const closers = [];

before(async () => {
  // dual: mobile and desktop exclude each other, web apart; one web instance per user
  gw = await startGateway({ app: { policy: "dual", max_instances: { web: 1 } } });
  closers.push(() => gw.close());
});
after(async () => {
  make.destroyAll();
  for (const c of closers.reverse()) await c();
});
afterEach(() => make.destroyAll());

async function proxied(options = {}) {
  const proxy = await startProxy(gw.wsPort);
  closers.push(() => proxy.close());
  const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId, ...options });
  return { proxy, client, rec: record(client) };
}

const logins = (proxy) => proxy.sentJson().filter((m) => m.type === "login");

/** After a kick: status 3, disconnected, and no attempt to come back for a while. */
async function assertStaysOut(client, proxy, rec) {
  assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
  assert.equal(client.getLoginUser(), "");
  await waitFor(() => client.getNetState() === "disconnected");
  await sleep(800); // many times the 50-400 ms backoff of the test clients
  assert.equal(proxy.accepted, 1, "never reconnected");
  assert.equal(logins(proxy).length, 1, "never logged in again");
  assert.equal(rec.of("kickedOffline").length, 1, "kickedOffline exactly once");
}

describe("kicks", () => {
  test("another web tab takes the only web slot: multi_device, once, status 3, no reconnection", async () => {
    const { client, proxy, rec } = await proxied();
    const other = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    await other.login(alice, gw.sig(alice));
    const kick = await rec.wait("kickedOffline");
    assert.deepEqual(kick, { reason: "multi_device", byPlatform: "web" });
    const tail = rec.names().slice(-3);
    assert.deepEqual(tail, ["kickedOffline", "loginStatusChanged", "netStateChanged"], "the cause first, then the state");
    assert.deepEqual(rec.of("loginStatusChanged").at(-1), { status: 3, prev: 1 });
    await assertStaysOut(client, proxy, rec);
    const on = await gw.online(alice);
    assert.equal(on.instances.length, 1);
    assert.equal(on.instances[0].instance_id, other.instanceId);
    assert.equal(other.getLoginStatus(), LoginStatus.LOGINED);
  });

  test("a device of the same group (android, then iphone): multi_device by iphone", async () => {
    const { client, proxy, rec } = await proxied({ platform: "android" });
    const phone = make({ url: gw.url, sdkAppId: gw.sdkAppId, platform: "iphone" });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    const pending = client.send(alice, "x").catch((e) => e);
    await phone.login(alice, gw.sig(alice));
    assert.deepEqual(await rec.wait("kickedOffline"), { reason: "multi_device", byPlatform: "iphone" });
    await pending;
    await assertStaysOut(client, proxy, rec);
  });

  test("the admin API kicks the user: reason admin (4502), byPlatform null, no reconnection", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    assert.deepEqual(await gw.kick(alice, { platform: "web", instance_id: client.instanceId }), { kicked: 1 });
    assert.deepEqual(await rec.wait("kickedOffline"), { reason: "admin", byPlatform: null });
    await assertStaysOut(client, proxy, rec);
  });

  test("a close 4501 without the push still counts as a kick, once", async () => {
    const { client, proxy, rec } = await proxied();
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "kicked_offline" ? null : undefined);
    const other = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    await other.login(alice, gw.sig(alice));
    assert.deepEqual(await rec.wait("kickedOffline"), { reason: "multi_device", byPlatform: null });
    await assertStaysOut(client, proxy, rec);
  });

  test("a close 4502 without the push: an admin kick, once", async () => {
    const { client, proxy, rec } = await proxied();
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "kicked_offline" ? null : undefined);
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    await gw.kick(alice);
    assert.deepEqual(await rec.wait("kickedOffline"), { reason: "admin", byPlatform: null });
    await assertStaysOut(client, proxy, rec);
  });

  test("a re-login answered 70052 (the admin kick revoked the user's tickets while the link was down) is an admin kick", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    proxy.refuse(true);
    proxy.cutAll();
    await waitFor(() => client.getNetState() === "connecting");
    await waitFor(async () => (await gw.online(alice)).status === "Offline");
    await gw.kick(alice); // nobody online to kick, but every ticket minted until now is revoked
    proxy.refuse(false);
    assert.deepEqual(await rec.wait("kickedOffline", { timeout: 3000 }), { reason: "admin", byPlatform: null });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    await waitFor(() => client.getNetState() === "disconnected");
    const attempts = proxy.accepted;
    await sleep(800);
    assert.equal(proxy.accepted, attempts, "no attempt after the 70052");
    assert.equal(rec.of("kickedOffline").length, 1);
    assert.equal(rec.of("loginStatusChanged").at(-1).status, 3);
  });

  test("after a kick the app can log in again itself", async () => {
    const { client, rec } = await proxied();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    await gw.kick(alice, { platform: "web" });
    await rec.wait("kickedOffline");
    await sleep(1100); // a whole-user kick would revoke; a device kick does not
    const res = await client.login(alice, gw.sig(alice));
    assert.equal(res.userID, alice);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
  });
});

describe("abandoned sockets", () => {
  test("the replaced kick of the SDK's own old socket is ignored", async () => {
    // A socket the SDK gave up on may still deliver frames (ws delivers while closing; here it
    // lingers a second): its events must not count.
    class LingeringWebSocket extends WebSocket {
      terminate() {
        setTimeout(() => super.terminate(), 1500);
      }
      close(code, reason) {
        setTimeout(() => super.close(code, reason), 1500);
      }
    }
    const { client, proxy, rec } = await proxied({ WebSocket: LingeringWebSocket, pingIntervalMs: 300, requestTimeoutMs: 1000 });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    const [oldConn] = proxy.open;
    proxy.blackholeAll(); // the old link goes silent: the ping times out, the SDK moves on
    await waitFor(() => proxy.accepted === 2 && client.getNetState() === "connected", { timeout: 4000, what: "a new link" });
    // the gateway kicked the old socket (same instance id: replaced); let that reach the old socket
    await sleep(100);
    proxy.release(oldConn);
    await sleep(700);
    assert.equal(rec.of("kickedOffline").length, 0, "the old socket's kick is not the client's");
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getNetState(), "connected");
    assert.deepEqual(await client.send(alice, "still here"), { delivered: 0 });
    const on = await gw.online(alice);
    assert.equal(on.instances.length, 1);
    assert.equal(on.instances[0].instance_id, client.instanceId);
  });

  test("a call pending on the kicked socket rejects (6014), later calls reject 6014 at once", async () => {
    const { client, proxy } = await proxied();
    const other = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "response" ? null : undefined);
    const inflight = client.send("nobody", "x");
    await waitFor(() => proxy.sentJson().some((m) => m.type === "send"));
    proxy.rewriteServerText = null;
    await other.login(alice, gw.sig(alice));
    assert.equal((await rejection(inflight)).code, 6014);
    assert.equal((await rejection(client.send("nobody", "y"))).code, 6014);
  });
});
