// Contract §13 rule 6: with getUserSig the SDK refreshes before expiry (refresh_sig at
// expireAt - min(max(90 s, L/10), L/2)) so a session outlives its tickets; without it
// user_sig_expired → status 3 and userSigExpired; an automatic re-login answered 70001 asks
// getUserSig once (reason "expired") and retries once. Tickets of 3 seconds keep it quick.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { realNowSeconds } from "./helpers/usersig.js";
import { record, sleep, uniqueUser, waitFor } from "./helpers/util.js";

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

async function proxied(options = {}) {
  const proxy = await startProxy(gw.wsPort);
  closers.push(() => proxy.close());
  const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId, ...options });
  return { proxy, client, rec: record(client) };
}

/** A getUserSig that mints `life`-second tickets and remembers each call. */
function minter(life, { fail = () => false, expired = false } = {}) {
  const calls = [];
  const fn = async ({ userID, reason }) => {
    calls.push({ userID, reason, at: Date.now() });
    if (fail(reason)) throw new Error(`backend down (${reason})`);
    return expired ? gw.sig(userID, 1, realNowSeconds() - 100) : gw.sig(userID, life);
  };
  fn.calls = calls;
  return fn;
}

describe("refresh before expiry (getUserSig)", () => {
  test("a session outlives several 3-second tickets: refresh_sig at expireAt - L/2, never user_sig_expired", async () => {
    const getUserSig = minter(3);
    const { client, proxy, rec } = await proxied({ getUserSig });
    const alice = uniqueUser("alice");
    const loginAt = Date.now();
    const { expireAt } = await client.login(alice, gw.sig(alice, 3));
    await sleep(6500);
    assert.equal(rec.of("userSigExpired").length, 0);
    assert.equal(rec.of("error").length, 0, JSON.stringify(rec.of("error")));
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(proxy.accepted, 1, "refreshed on the same socket");
    const refreshes = proxy.sentJson().filter((m) => m.type === "refresh_sig");
    assert.ok(refreshes.length >= 3, `${refreshes.length} refreshes in 6.5 s of 3 s tickets`);
    assert.ok(getUserSig.calls.every((c) => c.reason === "refresh" && c.userID === alice));
    // the first refresh: L = expireAt - now at login (2-3 s), lead = min(max(90 s, L/10), L/2) = L/2
    const life = expireAt * 1000 - loginAt;
    const lead = expireAt * 1000 - getUserSig.calls[0].at;
    assert.ok(Math.abs(lead - life / 2) < 300, `refreshed ${lead} ms before expiry, L = ${life} ms`);
    const on = await gw.online(alice);
    assert.ok(on.instances[0].expire_at > expireAt + 3, "the gateway's expire_at moved on");
  });
});

describe("expiry without getUserSig", () => {
  test("user_sig_expired: status 3, userSigExpired, the socket closed, no reconnection", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice, 2));
    await rec.wait("userSigExpired", { timeout: 5000 });
    assert.deepEqual(rec.of("userSigExpired"), [{}]);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getLoginUser(), "");
    assert.deepEqual(rec.names().slice(-3), ["userSigExpired", "loginStatusChanged", "netStateChanged"]);
    await waitFor(() => proxy.open.length === 0, { what: "the socket to close" });
    await sleep(500);
    assert.equal(proxy.accepted, 1);
  });

  test("a re-login answered 70001 (the ticket ran out while the link was down): status 3 and userSigExpired", async () => {
    const { client, proxy, rec } = await proxied();
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice, 2));
    proxy.refuse(true);
    proxy.cutAll();
    await sleep(3200);
    proxy.refuse(false);
    await rec.wait("userSigExpired", { timeout: 3000 });
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(rec.of("kickedOffline").length, 0);
    const n = proxy.accepted;
    await sleep(500);
    assert.equal(proxy.accepted, n, "no further attempts");
  });
});

describe("expired re-login with getUserSig", () => {
  test("a re-login answered 70001 asks getUserSig once (reason expired) and logs in with the new ticket", async () => {
    const getUserSig = minter(600);
    const { client, proxy, rec } = await proxied({ getUserSig, requestTimeoutMs: 800 });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice, 2));
    proxy.refuse(true);
    proxy.cutAll(); // the planned refresh finds no link (9508: an error event), the ticket runs out
    await sleep(3200);
    proxy.refuse(false);
    await waitFor(() => client.getNetState() === "connected", { timeout: 3000, what: "the re-login" });
    const expired = getUserSig.calls.filter((c) => c.reason === "expired");
    assert.equal(expired.length, 1);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(rec.of("userSigExpired").length, 0);
    assert.equal(rec.of("loginStatusChanged").length, 2);
    const logins = proxy.sentJson().filter((m) => m.type === "login");
    assert.notEqual(logins.at(-1).user_sig, logins[0].user_sig, "the last login used the fresh ticket");
    assert.equal((await gw.online(alice)).status, "Online");
  });

  test("the retry is refused again (getUserSig gives an expired ticket): status 3 and userSigExpired", async () => {
    const getUserSig = minter(600, { expired: true });
    const { client, proxy, rec } = await proxied({ getUserSig, requestTimeoutMs: 800 });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice, 2));
    proxy.refuse(true);
    proxy.cutAll();
    await sleep(3200);
    proxy.refuse(false);
    await rec.wait("userSigExpired", { timeout: 3000 });
    assert.equal(getUserSig.calls.filter((c) => c.reason === "expired").length, 1, "asked once");
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
  });

  test("user_sig_expired while getUserSig's refresh failed: one fresh ticket and a login on the same socket", async () => {
    const getUserSig = minter(600, { fail: (reason) => reason === "refresh" });
    const { client, proxy, rec } = await proxied({ getUserSig });
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice, 2));
    await waitFor(() => getUserSig.calls.some((c) => c.reason === "expired"), { timeout: 5000, what: "the expired push" });
    await waitFor(() => proxy.sentJson().filter((m) => m.type === "login").length === 2, { what: "the second login" });
    await sleep(200);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(rec.of("userSigExpired").length, 0);
    assert.equal(proxy.accepted, 1, "the same socket");
    assert.ok(rec.of("error").some((e) => e.desc.includes("getUserSig")), "the failed refresh was reported");
    assert.equal((await gw.online(alice)).status, "Online");
  });
});
