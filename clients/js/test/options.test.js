// Local validation: bad options throw 6017 from the constructor; bad arguments reject before anything
// is sent (7003 for a user id, 70002 for an empty UserSig, 6017 otherwise). The proxy in front of the
// real gateway proves that nothing went out.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import WebSocket from "ws";
import { ErrorCode, ImgateClient, ImgateError, LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { rejection, sleep, uniqueUser } from "./helpers/util.js";

let gw;
let proxy;
const make = clientFactory();

before(async () => {
  gw = await startGateway();
  proxy = await startProxy(gw.wsPort);
});
after(async () => {
  make.destroyAll();
  await proxy.close();
  await gw.close();
});
afterEach(() => make.destroyAll());

const base = () => ({ url: proxy.url, sdkAppId: gw.sdkAppId, WebSocket });

describe("options", () => {
  const bad = {
    "no url": { url: undefined },
    "an empty url": { url: "" },
    "a url that is not ws": { url: "ftp://127.0.0.1/ws" },
    "a url that is not a URL": { url: "ws://[nope" },
    "sdkAppId as a string": { sdkAppId: "1400000000" },
    "a negative sdkAppId": { sdkAppId: -1 },
    "a fractional sdkAppId": { sdkAppId: 1.5 },
    "an unknown platform": { platform: "ios" },
    "an upper-case platform": { platform: "Web" },
    "an empty instanceId": { instanceId: "" },
    "an instanceId with a space": { instanceId: "tab 1" },
    "an instanceId of 65 bytes": { instanceId: "x".repeat(65) },
    "a non-ASCII instanceId": { instanceId: "tab-é" },
    "an unknown encoding": { encoding: "msgpack" },
    "getUserSig not a function": { getUserSig: "sig" },
    "a negative delay": { minReconnectDelayMs: -1 },
    "max below min": { minReconnectDelayMs: 1000, maxReconnectDelayMs: 10 },
    "a zero request timeout": { requestTimeoutMs: 0 },
    "a NaN ping interval": { pingIntervalMs: NaN },
    "WebSocket not a constructor": { WebSocket: {} },
  };
  for (const [name, override] of Object.entries(bad)) {
    test(`${name}: the constructor throws 6017`, () => {
      assert.throws(
        () => new ImgateClient({ ...base(), ...override }),
        (e) => e instanceof ImgateError && e.code === ErrorCode.INVALID_PARAMETERS && e.desc.length > 0,
      );
    });
  }

  test("Node 20 has no global WebSocket: without the option the constructor says what to pass", () => {
    assert.equal(globalThis.WebSocket, undefined);
    assert.throws(
      () => new ImgateClient({ url: proxy.url, sdkAppId: 1 }),
      (e) => e.code === ErrorCode.INVALID_PARAMETERS && /ws package/.test(e.desc),
    );
  });

  test("defaults: web, an auto instance id, json", () => {
    const c = make(base());
    assert.equal(c.platform, "web");
    assert.match(c.instanceId, /^i-[0-9a-f]{24}$/);
    assert.equal(c.getLoginStatus(), LoginStatus.LOGOUT);
  });
});

describe("arguments are checked before anything is sent", () => {
  test("login(): bad user ids 7003, a non-string 6017, an empty UserSig 70002", async () => {
    const c = make(base());
    const before = proxy.accepted;
    for (const id of ["", "has space", "x".repeat(33), "é", "a/b", "tab\n", "@admin"]) {
      assert.equal((await rejection(c.login(id, "sig"))).code, ErrorCode.INVALID_USER_ID, JSON.stringify(id));
    }
    assert.equal((await rejection(c.login(42, "sig"))).code, ErrorCode.INVALID_PARAMETERS);
    assert.equal((await rejection(c.login(undefined, "sig"))).code, ErrorCode.INVALID_PARAMETERS);
    assert.equal((await rejection(c.login("alice", ""))).code, ErrorCode.USER_SIG_EMPTY);
    assert.equal((await rejection(c.login("alice", null))).code, ErrorCode.INVALID_PARAMETERS);
    assert.equal(c.getLoginStatus(), LoginStatus.LOGOUT, "a refused argument does not start a login");
    await sleep(50);
    assert.equal(proxy.accepted, before, "no socket was opened");
    // the longest valid user id works
    const long = "A_-9".repeat(8);
    assert.equal((await c.login(long, gw.sig(long))).userID, long);
  });

  test("send() and refreshUserSig() while logged in: refused locally, nothing sent", async () => {
    const c = make(base());
    const alice = uniqueUser("alice");
    await c.login(alice, gw.sig(alice));
    const sentBefore = proxy.clientMessages.length;
    assert.equal((await rejection(c.send("", "x"))).code, ErrorCode.INVALID_USER_ID);
    assert.equal((await rejection(c.send("bad id", "x"))).code, ErrorCode.INVALID_USER_ID);
    assert.equal((await rejection(c.send(7, "x"))).code, ErrorCode.INVALID_PARAMETERS);
    assert.equal((await rejection(c.send("bob", 42))).code, ErrorCode.INVALID_PARAMETERS);
    assert.equal((await rejection(c.send("bob", { text: "x" }))).code, ErrorCode.INVALID_PARAMETERS);
    assert.equal((await rejection(c.refreshUserSig(""))).code, ErrorCode.USER_SIG_EMPTY);
    assert.equal((await rejection(c.refreshUserSig(undefined))).code, ErrorCode.INVALID_PARAMETERS);
    await sleep(50);
    assert.equal(proxy.clientMessages.length, sentBefore);
    assert.equal(c.getLoginStatus(), LoginStatus.LOGINED);
    assert.deepEqual(await c.send("bob", ""), { delivered: 0 }, "an empty payload is valid");
  });
});
