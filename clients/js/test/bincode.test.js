// The whole client over binary frames (encoding: "bincode"), against the real gateway: requests go
// out as bincode, responses and pushes come back as bincode, and every rule works the same.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ErrorCode, LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, rejection, uniqueUser, waitFor } from "./helpers/util.js";

let gw;
const make = clientFactory();
const closers = [];

before(async () => {
  gw = await startGateway({ app: { policy: "dual", max_instances: { web: 1 } } });
  closers.push(() => gw.close());
});
after(async () => {
  make.destroyAll();
  for (const c of closers.reverse()) await c();
});
afterEach(() => make.destroyAll());

async function binary(options = {}) {
  const proxy = await startProxy(gw.wsPort);
  closers.push(() => proxy.close());
  const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId, encoding: "bincode", ...options });
  return { proxy, client, rec: record(client) };
}

describe("bincode end to end", () => {
  test("login, send, message push, ping, refresh, logout: every frame binary", async () => {
    const { client, proxy, rec } = await binary({ platform: "windows", instanceId: "pc-1" });
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    const res = await client.login(alice, gw.sig(alice, 600));
    assert.deepEqual({ ...res, expireAt: 0 }, { userID: alice, platform: "windows", instanceId: "pc-1", expireAt: 0 });
    await peer.login(bob, gw.sig(bob));
    assert.deepEqual(await client.send(bob, "héllo 🌍"), { delivered: 1 });
    await peer.send(alice, "<b>bold</b> & ünïcode");
    assert.deepEqual(await rec.wait("message"), { from: bob, fromPlatform: "web", payload: "<b>bold</b> & ünïcode" });
    await gw.push(alice, "from the operator");
    await rec.wait("message", { count: 2 });
    assert.deepEqual(rec.of("message")[1], { from: "@admin", fromPlatform: null, payload: "from the operator" });
    assert.ok((await client.ping()).serverTimeMs > 0);
    const r = await client.refreshUserSig(gw.sig(alice, 7200));
    assert.ok(r.expireAt > res.expireAt);
    assert.equal((await rejection(client.refreshUserSig(gw.sig(bob)))).code, ErrorCode.USER_SIG_WRONG_USER);
    await client.logout();
    assert.ok(proxy.clientMessages.length >= 6);
    assert.ok(proxy.clientMessages.every((m) => m.bytes && !m.text), "no text frame went out");
    assert.equal(proxy.clientMessages[0].bytes[0], 0, "ClientMsg 0 = login");
  });

  test("a reconnection and a kick in bincode", async () => {
    const { client, proxy, rec } = await binary();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    proxy.cutAll();
    await waitFor(() => proxy.accepted === 2 && client.getNetState() === "connected", { what: "the re-login" });
    await gw.kick(alice);
    assert.deepEqual(await rec.wait("kickedOffline"), { reason: "admin", byPlatform: null });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
  });

  test("user_sig_expired in bincode", async () => {
    const { client, rec } = await binary();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice, 2));
    await rec.wait("userSigExpired", { timeout: 5000 });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
  });
});
