// Contract §13 rules 1-3 (status machine, 7501 and 6023, same user and account switch), logout, the
// calls that need a session, and event handlers that throw. One real gateway for the file; each test
// goes through its own TCP proxy so it can see every frame the SDK sent.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ErrorCode, LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, rejection, sleep, uniqueUser, waitFor } from "./helpers/util.js";

let gw;
const make = clientFactory();
const proxies = [];

before(async () => {
  gw = await startGateway({ app: { policy: "dual", max_instances: { web: 5 } } });
});
after(async () => {
  make.destroyAll();
  await Promise.all(proxies.map((p) => p.close()));
  await gw.close();
});
afterEach(() => make.destroyAll());

async function proxied(options = {}) {
  const proxy = await startProxy(gw.wsPort);
  proxies.push(proxy);
  const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId, ...options });
  return { proxy, client, rec: record(client) };
}

const logins = (proxy) => proxy.sentJson().filter((m) => m.type === "login");

describe("rule 1: the status machine", () => {
  test("status is 3 at start, 2 while the login runs, 1 once it succeeded", async () => {
    const { client, rec } = await proxied();
    const alice = uniqueUser("alice");
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getNetState(), "disconnected");
    assert.equal(client.getLoginUser(), "");
    const p = client.login(alice, gw.sig(alice));
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINING);
    assert.equal(client.getLoginUser(), "", "nobody is logged in before the answer");
    const res = await p;
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getNetState(), "connected");
    assert.equal(client.getLoginUser(), alice);
    assert.equal(res.userID, alice);
    assert.equal(res.platform, "web");
    assert.equal(res.instanceId, client.instanceId);
    assert.ok(Number.isInteger(res.expireAt) && res.expireAt > Date.now() / 1000 + 86000);
    await waitFor(() => rec.of("loginStatusChanged").length === 2, { what: "two status events" });
    assert.deepEqual(rec.of("loginStatusChanged"), [
      { status: 2, prev: 3 },
      { status: 1, prev: 2 },
    ]);
    assert.deepEqual(rec.of("netStateChanged"), [{ state: "connecting" }, { state: "connected" }]);
    assert.equal((await gw.online(alice)).status, "Online");
  });

  test("a failed first login goes back to 3 and getLoginUser() is empty", async () => {
    const { client, rec } = await proxied();
    const alice = uniqueUser("alice");
    const wrongKey = "0".repeat(64);
    const { genUserSig } = await import("./helpers/usersig.js");
    const err = await rejection(client.login(alice, genUserSig({ sdkAppId: gw.sdkAppId, key: wrongKey, userID: alice })));
    assert.equal(err.name, "ImgateError");
    assert.equal(err.code, ErrorCode.USER_SIG_WRONG_KEY);
    assert.equal(typeof err.desc, "string");
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getLoginUser(), "");
    assert.equal(client.getNetState(), "disconnected");
    await waitFor(() => rec.of("loginStatusChanged").length === 2);
    assert.deepEqual(rec.of("loginStatusChanged"), [
      { status: 2, prev: 3 },
      { status: 3, prev: 2 },
    ]);
  });

  test("a failed login while logged in changes nothing: the session stays as it was", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    const first = await client.login(alice, gw.sig(alice));
    const err = await rejection(client.login(bob, gw.sig(alice))); // a ticket of another user: 70013
    assert.equal(err.code, ErrorCode.USER_SIG_WRONG_USER);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(client.getLoginUser(), alice);
    assert.equal(client.getNetState(), "connected");
    assert.equal(proxy.accepted, 1, "the same socket");
    assert.equal((await gw.online(alice)).status, "Online");
    assert.equal((await gw.online(bob)).status, "Offline");
    // and it still works as alice
    const again = await client.login(alice, gw.sig(alice));
    assert.deepEqual(again, first);
    await waitFor(() => rec.of("loginStatusChanged").length === 4);
    assert.deepEqual(rec.of("loginStatusChanged").slice(2), [
      { status: 2, prev: 1 },
      { status: 1, prev: 2 },
    ]);
  });
});

describe("rule 2: one login at a time", () => {
  test("login() while a login runs rejects with 7501 and sends nothing", async () => {
    const { client, proxy } = await proxied();
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    const first = client.login(alice, gw.sig(alice));
    const err = await rejection(client.login(bob, gw.sig(bob)));
    assert.equal(err.code, ErrorCode.LOGIN_IN_PROGRESS);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINING, "the first login goes on");
    await first;
    await sleep(100);
    assert.deepEqual(
      logins(proxy).map((m) => m.user_id),
      [alice],
      "only the first login went out",
    );
    assert.equal(proxy.accepted, 1);
    assert.equal(client.getLoginUser(), alice);
    assert.equal((await gw.online(bob)).status, "Offline");
  });

  test("logout() before the socket opened: the login rejects with 6023, status 3", async () => {
    const { client, rec } = await proxied();
    const alice = uniqueUser("alice");
    const p = client.login(alice, gw.sig(alice));
    const out = client.logout();
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    const err = await rejection(p);
    assert.equal(err.code, ErrorCode.LOGIN_CANCELLED);
    await out;
    await sleep(200);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getLoginUser(), "");
    assert.equal(client.getNetState(), "disconnected");
    assert.equal((await gw.online(alice)).status, "Offline");
    assert.deepEqual(rec.of("loginStatusChanged"), [
      { status: 2, prev: 3 },
      { status: 3, prev: 2 },
    ]);
  });

  test("logout() with the login on the wire: 6023 at once, and the gateway drops the session", async () => {
    const { client, proxy } = await proxied();
    const alice = uniqueUser("alice");
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "response" ? null : undefined); // hold answers back
    const p = client.login(alice, gw.sig(alice));
    await waitFor(() => logins(proxy).length === 1, { what: "the login frame" });
    await waitFor(async () => (await gw.online(alice)).status === "Online", { what: "the gateway to log alice in" });
    await client.logout();
    const err = await rejection(p);
    assert.equal(err.code, ErrorCode.LOGIN_CANCELLED);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    await waitFor(async () => (await gw.online(alice)).status === "Offline", { what: "alice to go offline" });
    await sleep(300);
    assert.equal(proxy.accepted, 1, "no reconnection after logout");
  });
});

describe("rule 3: the same user again, another user on the same socket", () => {
  test("login(sameUser) while logged in resolves the current session and never kicks the client's socket", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    const first = await client.login(alice, gw.sig(alice));
    const second = await client.login(alice, gw.sig(alice, 3600));
    assert.deepEqual(second, first);
    await sleep(200);
    assert.equal(rec.of("kickedOffline").length, 0);
    assert.equal(proxy.accepted, 1);
    assert.equal(logins(proxy).length, 1);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    const on = await gw.online(alice);
    assert.equal(on.instances.length, 1);
    assert.equal(on.instances[0].instance_id, client.instanceId);
  });

  test("login(otherUser) while logged in switches the account on the same socket", async () => {
    const { client, proxy, rec } = await proxied();
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    const carol = uniqueUser("carol");
    await client.login(alice, gw.sig(alice));
    await peer.login(carol, gw.sig(carol));
    const res = await client.login(bob, gw.sig(bob));
    assert.equal(res.userID, bob);
    assert.equal(client.getLoginUser(), bob);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(proxy.accepted, 1, "no second socket");
    assert.equal(proxy.open.length, 1);
    assert.equal((await gw.online(alice)).status, "Offline");
    assert.equal((await gw.online(bob)).status, "Online");
    assert.deepEqual(await peer.send(alice, "to the old account"), { delivered: 0 });
    assert.deepEqual(await peer.send(bob, "to the new account"), { delivered: 1 });
    await rec.wait("message");
    assert.equal(rec.of("message")[0].payload, "to the new account");
    assert.equal(rec.of("kickedOffline").length, 0, "an account switch is not a kick");
    assert.deepEqual(
      rec.of("loginStatusChanged").map((e) => e.status),
      [2, 1, 2, 1],
    );
  });
});

describe("logout and calls that need a session", () => {
  test("logout() logs out on the gateway, closes the socket and never reconnects", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    await client.logout();
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getNetState(), "disconnected");
    assert.equal(client.getLoginUser(), "");
    assert.ok(proxy.sentJson().some((m) => m.type === "logout"), "a logout request went out");
    await waitFor(() => proxy.open.length === 0, { what: "the socket to close" });
    assert.equal((await gw.online(alice)).status, "Offline");
    await sleep(500);
    assert.equal(proxy.accepted, 1, "no reconnection");
    assert.equal(rec.of("kickedOffline").length, 0);
    // logged out twice: nothing to do
    await client.logout();
  });

  test("send(), refreshUserSig() and ping() while logged out reject with 6014 and open nothing", async () => {
    const { client, proxy } = await proxied();
    assert.equal((await rejection(client.send("bob", "x"))).code, ErrorCode.NOT_LOGGED_IN);
    assert.equal((await rejection(client.refreshUserSig(gw.sig("bob")))).code, ErrorCode.NOT_LOGGED_IN);
    assert.equal((await rejection(client.ping())).code, ErrorCode.NOT_LOGGED_IN);
    await sleep(100);
    assert.equal(proxy.accepted, 0);
  });

  test("a call made while the first login runs waits for it and then goes out", async () => {
    const { client } = await proxied();
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    await peer.login(bob, gw.sig(bob));
    const login = client.login(alice, gw.sig(alice));
    const sent = client.send(bob, "early");
    await login;
    assert.deepEqual(await sent, { delivered: 1 });
  });

  test("ping() answers with the gateway's clock; refreshUserSig() extends expireAt", async () => {
    const { client } = await proxied();
    const alice = uniqueUser("alice");
    const { expireAt } = await client.login(alice, gw.sig(alice, 600));
    const { serverTimeMs } = await client.ping();
    assert.ok(Math.abs(serverTimeMs - Date.now()) < 5000);
    const r = await client.refreshUserSig(gw.sig(alice, 7200));
    assert.ok(r.expireAt > expireAt + 6000);
    assert.equal((await gw.online(alice)).instances[0].expire_at, r.expireAt);
    const bad = await rejection(client.refreshUserSig(gw.sig("someone_else")));
    assert.equal(bad.code, ErrorCode.USER_SIG_WRONG_USER);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
  });
});

describe("event handlers cannot break the SDK", () => {
  test("a handler that throws or rejects is reported on console.error; the SDK and other handlers go on", async (t) => {
    const logged = [];
    t.mock.method(console, "error", (...args) => logged.push(args));
    const unhandled = [];
    const onUnhandled = (e) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    t.after(() => process.off("unhandledRejection", onUnhandled));

    const { client } = await proxied();
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    const seen = [];
    client.on("loginStatusChanged", () => {
      throw new Error("boom in a status handler");
    });
    client.on("netStateChanged", async () => {
      throw new Error("boom in an async handler");
    });
    client.on("message", () => {
      throw new Error("boom in a message handler");
    });
    client.on("loginStatusChanged", (e) => seen.push(e.status));
    client.on("message", (m) => seen.push(m.payload));

    await client.login(alice, gw.sig(alice));
    await peer.login(bob, gw.sig(bob));
    await peer.send(alice, "still delivered");
    await waitFor(() => seen.includes("still delivered"), { what: "the second message handler" });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.deepEqual(await client.send(bob, "and the client still works"), { delivered: 1 });
    await sleep(20);
    assert.deepEqual(seen, [2, 1, "still delivered"]);
    const texts = logged.map((args) => args.map(String).join(" "));
    assert.ok(texts.some((s) => s.includes("loginStatusChanged") && s.includes("boom in a status handler")), texts.join("\n"));
    assert.ok(texts.some((s) => s.includes("boom in an async handler")));
    assert.ok(texts.some((s) => s.includes("boom in a message handler")));
    assert.equal(unhandled.length, 0);
  });

  test("off() removes a handler; on() refuses an unknown event or a non-function with 6017", async () => {
    const { client } = await proxied();
    const alice = uniqueUser("alice");
    const seen = [];
    const fn = (e) => seen.push(e.status);
    client.on("loginStatusChanged", fn);
    client.off("loginStatusChanged", fn);
    await client.login(alice, gw.sig(alice));
    await sleep(20);
    assert.deepEqual(seen, []);
    assert.throws(() => client.on("kicked", fn), (e) => e.code === ErrorCode.INVALID_PARAMETERS);
    assert.throws(() => client.on("message", "not a function"), (e) => e.code === ErrorCode.INVALID_PARAMETERS);
  });
});
