// Contract §13 rule 7: closes 1007 and 1009 are client bugs: an `error` event, status 3, no
// reconnection. 1009 is real (a frame over the gateway's max_frame_bytes); 1007 is a close frame the
// proxy sends in the gateway's place, and a frame the SDK cannot decode is treated the same way.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, rejection, sleep, uniqueUser, waitFor } from "./helpers/util.js";

let gw;
const make = clientFactory();
const closers = [];

before(async () => {
  gw = await startGateway({ settings: { max_frame_bytes: 8192, max_payload_bytes: 4096 } });
  closers.push(() => gw.close());
});
after(async () => {
  make.destroyAll();
  for (const c of closers.reverse()) await c();
});
afterEach(() => make.destroyAll());

async function loggedIn(options = {}) {
  const proxy = await startProxy(gw.wsPort);
  closers.push(() => proxy.close());
  const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId, ...options });
  const rec = record(client);
  const user = uniqueUser("f");
  await client.login(user, gw.sig(user));
  return { proxy, client, rec, user };
}

async function assertDead(client, proxy, rec, code) {
  const err = await rec.wait("error");
  assert.equal(err.code, code);
  assert.equal(typeof err.desc, "string");
  assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
  await waitFor(() => client.getNetState() === "disconnected");
  await sleep(600);
  assert.equal(proxy.accepted, 1, "no reconnection");
  assert.equal(rec.of("kickedOffline").length, 0);
}

describe("client bugs end the session", () => {
  test("a frame over max_frame_bytes: the gateway closes 1009; error, status 3, no reconnection", async () => {
    const { client, proxy, rec } = await loggedIn();
    const sent = rejection(client.send("bob", "x".repeat(9000)));
    await assertDead(client, proxy, rec, 1009);
    assert.equal((await sent).code, 6014);
  });

  test("a payload over max_payload_bytes (in a frame under the limit) is only a 6017 answer", async () => {
    const { client, rec } = await loggedIn();
    const err = await rejection(client.send("bob", "x".repeat(5000)));
    assert.equal(err.code, 6017);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
    assert.equal(rec.of("error").length, 0);
  });

  test("a close 1007: error, status 3, no reconnection", async () => {
    const { client, proxy, rec } = await loggedIn();
    proxy.injectClose(1007, "invalid JSON");
    await assertDead(client, proxy, rec, 1007);
    assert.equal(rec.of("error")[0].desc, "invalid JSON");
  });

  test("a frame from the gateway the SDK cannot decode: error 1007, status 3", async () => {
    const { client, proxy, rec, user } = await loggedIn();
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "message" ? '{"type":"surprise"}' : undefined);
    const peer = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const bob = uniqueUser("bob");
    await peer.login(bob, gw.sig(bob));
    await peer.send(user, "hi");
    await assertDead(client, proxy, rec, 1007);
  });

  test("a first login with a UserSig over max_frame_bytes rejects with 1009, status 3", async () => {
    const proxy = await startProxy(gw.wsPort);
    closers.push(() => proxy.close());
    const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId });
    const rec = record(client);
    const err = await rejection(client.login("huge", "eJy" + "A".repeat(10000)));
    assert.equal(err.code, 1009);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal((await rec.wait("error")).code, 1009);
    await sleep(400);
    assert.equal(proxy.accepted, 1);
  });
});
