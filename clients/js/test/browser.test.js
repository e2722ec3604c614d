// End to end in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): the
// console page (served by the gateway's admin listener) on the SDK, against a real gateway with one
// web slot per user. Two tabs of alice: the first is kicked (kickedOffline, "logged out"), the
// second stays; a message from a third tab (bob) arrives, escaped; the admin panel lists who is
// online; a reloaded tab keeps its instance id (sessionStorage) and so replaces its own old session.
// No page may break the Content-Security-Policy. A screenshot goes to test-output/console.png.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { ADMIN_TOKEN, startGateway } from "./helpers/gateway.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const OUT = fileURLToPath(new URL("../test-output/", import.meta.url));

let gw;
let context;
let profile;
const problems = []; // console errors and CSP violations of every page

before(async () => {
  gw = await startGateway({ settings: { dev_usersig: true }, app: { policy: "dual", max_instances: { web: 1 } } });
  profile = mkdtempSync(join(tmpdir(), "imgate-chromium-"));
  // a fresh profile per run; one context = one browser window whose pages are tabs
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    viewport: { width: 1280, height: 900 },
  });
});

after(async () => {
  await context?.close();
  await gw?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const tid = (id) => `[data-testid="${id}"]`;

async function openConsole() {
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(`${gw.adminUrl}/console`);
  await page.waitForSelector("body[data-ready=true]");
  return page;
}

/** Waits until the text of [data-testid=id] passes `check` ({includes}, {startsWith} or {equals}). */
async function waitText(page, id, check, timeout = 5000) {
  try {
    await page.waitForFunction(
      ([sel, c]) => {
        const t = document.querySelector(sel)?.textContent ?? "";
        if (c.includes !== undefined) return t.includes(c.includes);
        if (c.startsWith !== undefined) return t.startsWith(c.startsWith);
        return t === c.equals;
      },
      [tid(id), check],
      { timeout },
    );
  } catch (e) {
    const text = await page.locator(tid(id)).textContent();
    throw new Error(`${id} never showed ${JSON.stringify(check)}; it shows: ${text}\n${e.message}`);
  }
}

/** Mints with the console's button (dev_usersig) and logs in. */
async function loginAs(page, user) {
  await page.fill(tid("admin-token"), ADMIN_TOKEN); // a config-file gateway does not prefill it
  await page.fill(tid("user-id"), user);
  await page.click(tid("mint"));
  await page.waitForFunction((sel) => document.querySelector(sel).value.startsWith("eJ"), tid("user-sig"));
  await page.click(tid("login"));
  await waitText(page, "status", { includes: "logged in" });
}

const eventLines = (page) => page.locator(`${tid("events")} li`).allTextContents();

describe("the console in Chromium", () => {
  let tab1;
  let tab2;
  let tab3;

  test("the page is prefilled with the gateway's URL and app id", async () => {
    tab1 = await openConsole();
    assert.equal(await tab1.inputValue(tid("ws-url")), gw.url);
    assert.equal(await tab1.inputValue(tid("sdk-app-id")), String(gw.sdkAppId));
    assert.equal(await tab1.inputValue(tid("admin-token")), "", "no token prefilled from a config file");
    assert.equal(await tab1.locator(tid("status")).textContent(), "logged out");
    assert.equal(await tab1.locator(tid("net-state")).textContent(), "disconnected");
    for (const id of ["ws-url", "sdk-app-id", "user-id", "platform", "instance-id", "user-sig", "mint", "login", "logout", "status", "net-state", "events", "send-to", "send-payload", "send", "admin-token", "online-user", "online-query", "online-result", "kick"]) {
      assert.equal(await tab1.locator(tid(id)).count(), 1, `data-testid=${id}`);
    }
  });

  test("two tabs of alice with one web slot: the first is kicked, the second stays", async () => {
    await loginAs(tab1, "alice");
    assert.equal(await tab1.locator(tid("net-state")).textContent(), "connected");
    tab2 = await openConsole();
    await loginAs(tab2, "alice");
    await waitText(tab1, "status", { includes: "logged out" });
    await waitText(tab1, "events", { includes: "kickedOffline" });
    const lines = await eventLines(tab1);
    const kicked = lines.filter((l) => l.startsWith("kickedOffline"));
    assert.equal(kicked.length, 1, lines.join("\n"));
    assert.match(kicked[0], /"reason":"multi_device"/);
    assert.equal(await tab1.locator(tid("net-state")).textContent(), "disconnected");
    await tab1.waitForTimeout(700);
    assert.equal(await tab1.locator(tid("status")).textContent(), "logged out", "the kicked tab does not come back");
    assert.match(await tab2.locator(tid("status")).textContent(), /logged in as alice/);
  });

  test("a message from a third tab arrives, shown as text", async () => {
    tab3 = await openConsole();
    await loginAs(tab3, "bob");
    const payload = '<img src=x onerror="window.__pwned=1"> hi alice & <b>bold</b>';
    await tab3.fill(tid("send-to"), "alice");
    await tab3.fill(tid("send-payload"), payload);
    await tab3.click(tid("send"));
    await waitText(tab3, "send-result", { includes: "delivered to 1" });
    await waitText(tab2, "events", { includes: "hi alice" });
    const line = (await eventLines(tab2)).find((l) => l.startsWith("message"));
    assert.ok(line.includes('"from":"bob"') && line.includes("<img src=x"), line);
    assert.equal(await tab2.locator(`${tid("events")} img, ${tid("events")} b`).count(), 0, "no markup from a payload");
    assert.equal(await tab2.evaluate(() => window.__pwned), undefined);
  });

  test("the admin panel shows who is online and kicks", async () => {
    await tab3.fill(tid("admin-token"), ADMIN_TOKEN);
    await tab3.fill(tid("online-user"), "alice bob carol");
    await tab3.click(tid("online-query"));
    await waitText(tab3, "online-result", { includes: "carol" });
    const rows = await tab3.locator(`${tid("online-result")} li`).allTextContents();
    assert.equal(rows.length, 3);
    assert.match(rows[0], /^alice Online web/);
    assert.match(rows[1], /^bob Online web/);
    assert.match(rows[2], /^carol Offline$/);
    await tab3.fill(tid("online-user"), "alice");
    await tab3.click(tid("online-query"));
    await waitText(tab3, "online-result", { startsWith: "alice Online" });
    const aliceRow = await tab3.locator(`${tid("online-result")} li`).first().textContent();
    const instanceBefore = aliceRow.match(/web \((.+)\)/)[1];
    await mkdirSync(OUT, { recursive: true });
    await tab2.screenshot({ path: join(OUT, "console.png"), fullPage: true });

    // a reload keeps the tab's instance id (sessionStorage): its new login replaces its own session
    await tab2.reload();
    await tab2.waitForSelector("body[data-ready=true]");
    await loginAs(tab2, "alice");
    await tab3.click(tid("online-query"));
    await waitText(tab3, "online-result", { includes: instanceBefore });
    const on = await gw.online("alice");
    assert.equal(on.instances.length, 1);
    assert.equal(on.instances[0].instance_id, instanceBefore);

    // kick: every device of alice
    await tab3.click(tid("kick"));
    await waitText(tab3, "admin-result", { includes: "kicked 1" });
    await waitText(tab2, "events", { includes: "kickedOffline" });
    const lines = await eventLines(tab2);
    assert.ok(lines.some((l) => l.startsWith("kickedOffline") && l.includes('"reason":"admin"')), lines.join("\n"));
    await waitText(tab2, "status", { equals: "logged out" });
    await tab3.screenshot({ path: join(OUT, "console-admin.png"), fullPage: true });
  });

  test("no page broke the Content-Security-Policy or logged an error", () => {
    const bad = problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
    assert.deepEqual(bad, []);
    assert.ok(existsSync(join(OUT, "console.png")));
  });
});
