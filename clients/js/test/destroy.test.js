// destroy() (contract §13): closes with 1000, cancels every timer and pending call (6013), no
// reconnection, unusable afterwards; no event after it. "No timer left" is checked the way an app
// would notice: a Node process whose clients were all destroyed exits by itself at once.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
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

describe("destroy()", () => {
  test("pending calls and a login in progress reject with 6013; later calls too; no event after", async () => {
    const proxy = await startProxy(gw.wsPort);
    closers.push(() => proxy.close());
    const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId });
    const rec = record(client);
    const alice = uniqueUser("alice");
    await client.login(alice, gw.sig(alice));
    proxy.rewriteServerText = (text) => (JSON.parse(text).type === "response" ? null : undefined);
    const inflight = rejection(client.send(alice, "in flight"));
    const switching = rejection(client.login(uniqueUser("bob"), gw.sig("bob")));
    await waitFor(() => proxy.sentJson().filter((m) => m.type === "login").length === 2);
    const seen = rec.events.length;
    client.destroy();
    assert.equal((await inflight).code, ErrorCode.DESTROYED);
    assert.equal((await switching).code, ErrorCode.DESTROYED);
    assert.equal(client.getLoginStatus(), LoginStatus.LOGOUT);
    assert.equal(client.getNetState(), "disconnected");
    for (const p of [client.login(alice, gw.sig(alice)), client.send(alice, "x"), client.logout(), client.ping(), client.refreshUserSig("s")]) {
      assert.equal((await rejection(p)).code, ErrorCode.DESTROYED);
    }
    client.destroy(); // twice is harmless
    await waitFor(async () => (await gw.online(alice)).status === "Offline", { what: "the socket to close" });
    await sleep(300);
    assert.equal(rec.events.length, seen, "no event after destroy");
    assert.equal(proxy.accepted, 1, "no reconnection");
  });

  test("a process whose clients are destroyed exits at once: no timer is left behind", async () => {
    const proxy = await startProxy(gw.wsPort);
    const refusing = await startProxy(gw.wsPort);
    refusing.refuse(true);
    closers.push(() => proxy.close(), () => refusing.close());
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL("./fixtures/destroy-child.js", import.meta.url)),
        JSON.stringify({ gwUrl: gw.url, proxyUrl: proxy.url, refusingUrl: refusing.url, sdkAppId: gw.sdkAppId, key: gw.key }),
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    const exited = new Promise((r) => child.once("exit", (code) => r({ code, at: performance.now() })));
    const lines = [];
    createInterface({ input: child.stdout }).on("line", (l) => lines.push(l));
    try {
      await waitFor(() => lines.includes("ready"), { timeout: 10000, what: "the child's logins" });
      proxy.refuse(true);
      proxy.cutAll();
      child.stdin.write("cut-done\n");
      await waitFor(() => lines.includes("armed"), { what: "the child's waiting calls" });
      await waitFor(() => refusing.accepted >= 1, { what: "the first login's attempt" });
      child.stdin.write("destroy\n");
      await waitFor(() => lines.some((l) => l.startsWith("destroyed")), { what: "destroy" });
      const t0 = performance.now();
      const race = await Promise.race([exited, sleep(4000).then(() => null)]);
      assert.ok(race, "the child is still alive 3 s after destroy(): something keeps it");
      assert.equal(race.code, 0);
      assert.ok(race.at - t0 < 2500, `exited ${race.at - t0} ms after destroy`);
      assert.equal(lines.find((l) => l.startsWith("destroyed")), `destroyed [${ErrorCode.DESTROYED},${ErrorCode.DESTROYED}]`);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
