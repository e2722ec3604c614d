// Contract §13 rule 8 in Node: instanceId "auto" is a random id per client (kept across its
// reconnections), null logs in without one, a fixed id is sent as given. With a sessionStorage (a
// browser tab) "auto" is kept in it: see browser.test.js for real tabs; here a stand-in storage.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { isValidInstanceId } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { uniqueUser, waitFor } from "./helpers/util.js";

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

describe("instance ids", () => {
  test('"auto" in Node: a random id per client, sent on login and kept across a reconnection', async () => {
    const proxy = await startProxy(gw.wsPort);
    closers.push(() => proxy.close());
    const a = make({ url: proxy.url, sdkAppId: gw.sdkAppId });
    const b = make({ url: proxy.url, sdkAppId: gw.sdkAppId });
    assert.ok(isValidInstanceId(a.instanceId) && isValidInstanceId(b.instanceId));
    assert.notEqual(a.instanceId, b.instanceId);
    const alice = uniqueUser("alice");
    const ra = await a.login(alice, gw.sig(alice));
    const rb = await b.login(alice, gw.sig(alice));
    assert.equal(ra.instanceId, a.instanceId);
    assert.equal(rb.instanceId, b.instanceId);
    const ids = (await gw.online(alice)).instances.map((i) => i.instance_id).sort();
    assert.deepEqual(ids, [a.instanceId, b.instanceId].sort(), "two tabs, two slots");
    proxy.cutAll();
    await waitFor(() => proxy.accepted === 4 && a.getNetState() === "connected" && b.getNetState() === "connected", { what: "both back" });
    const after = (await gw.online(alice)).instances.map((i) => i.instance_id).sort();
    assert.deepEqual(after, ids, "each replaced its own old session");
  });

  test("null: no instance id on the wire; a fixed id as given", async () => {
    const proxy = await startProxy(gw.wsPort);
    closers.push(() => proxy.close());
    const none = make({ url: proxy.url, sdkAppId: gw.sdkAppId, instanceId: null });
    const fixed = make({ url: proxy.url, sdkAppId: gw.sdkAppId, instanceId: "pc-7f" });
    const alice = uniqueUser("alice");
    assert.equal((await none.login(alice, gw.sig(alice))).instanceId, null);
    assert.equal((await fixed.login(alice, gw.sig(alice))).instanceId, "pc-7f");
    const sent = proxy.sentJson().filter((m) => m.type === "login").map((m) => m.instance_id);
    assert.deepEqual(sent, [null, "pc-7f"]);
    const ids = (await gw.online(alice)).instances.map((i) => i.instance_id);
    assert.deepEqual(ids.sort(), [null, "pc-7f"].sort());
  });

  test('"auto" with a sessionStorage: one id per storage (tab), kept in it', async (t) => {
    const tab = (() => {
      const m = new Map();
      return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), map: m };
    })();
    globalThis.sessionStorage = tab;
    t.after(() => delete globalThis.sessionStorage);
    const first = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    const reloaded = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    assert.equal(first.instanceId, reloaded.instanceId, "the same tab keeps its id");
    assert.deepEqual([...tab.map.values()], [first.instanceId]);
    globalThis.sessionStorage = { getItem: () => null, setItem: () => {} };
    const otherTab = make({ url: gw.url, sdkAppId: gw.sdkAppId });
    assert.notEqual(otherTab.instanceId, first.instanceId);
    globalThis.sessionStorage = {
      getItem: () => {
        throw new Error("SecurityError");
      },
    };
    assert.ok(isValidInstanceId(make({ url: gw.url, sdkAppId: gw.sdkAppId }).instanceId), "blocked storage: a random id");
  });
});
