// Contract §13 rule 9: the SDK learns the gateway's clock from `ping` before it plans a refresh, and
// plans on that clock. The test skews this process's Date.now by an hour either way (the gateway and
// the tickets keep the real clock): a plan made on the local clock would refresh an hour late (the
// session expires) or at once, again and again.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { LoginStatus } from "../src/index.js";
import { clientFactory } from "./helpers/clients.js";
import { startGateway } from "./helpers/gateway.js";
import { startProxy } from "./helpers/proxy.js";
import { record, sleep, uniqueUser } from "./helpers/util.js";

let gw;
const make = clientFactory();
const closers = [];
const realNow = () => performance.timeOrigin + performance.now();

before(async () => {
  gw = await startGateway();
  closers.push(() => gw.close());
});
after(async () => {
  make.destroyAll();
  for (const c of closers.reverse()) await c();
});
afterEach(() => make.destroyAll());

for (const [name, skewMs] of [
  ["an hour behind", -3_600_000],
  ["an hour ahead", 3_600_000],
]) {
  describe(`a client clock ${name}`, () => {
    test("refreshes on the gateway's clock: at expireAt - L/2, a few times, never expired", async (t) => {
      t.mock.method(Date, "now", () => Math.floor(realNow() + skewMs));
      const calls = [];
      const getUserSig = ({ userID }) => {
        calls.push(realNow());
        return gw.sig(userID, 3);
      };
      const proxy = await startProxy(gw.wsPort);
      closers.push(() => proxy.close());
      const client = make({ url: proxy.url, sdkAppId: gw.sdkAppId, getUserSig });
      const rec = record(client);
      const user = uniqueUser("clk");
      const loginAt = realNow();
      const { expireAt } = await client.login(user, gw.sig(user, 3));
      await sleep(5000);
      assert.equal(rec.of("userSigExpired").length, 0);
      assert.equal(client.getLoginStatus(), LoginStatus.LOGINED);
      assert.ok(calls.length >= 2 && calls.length <= 5, `${calls.length} refreshes in 5 s of 3 s tickets`);
      const life = expireAt * 1000 - loginAt;
      const lead = expireAt * 1000 - calls[0];
      assert.ok(Math.abs(lead - life / 2) < 300, `first refresh ${lead} ms before expiry, L = ${life} ms`);
      assert.ok(proxy.sentJson().some((m) => m.type === "ping"), "the offset came from a ping");
    });
  });
}
