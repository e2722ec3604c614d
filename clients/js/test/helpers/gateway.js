// Boots the real gateway binary on 127.0.0.1:0 for a test, reads the addresses it prints, and stops
// it with SIGTERM (every socket closed 1001). `restart()` starts a new process on the same ports.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { genUserSig } from "./usersig.js";

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, "../../../..");
export const BIN = process.env.IMGATE_BIN ?? join(REPO, "target/release/imgate");
export const APP_ID = 1400000000;
export const ADMIN_TOKEN = "test-admin-token";

function toml(v) {
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(toml).join(", ")}]`;
  return String(v);
}

/**
 * Writes the config file. `settings`: top-level keys (login_timeout_secs, ...); `app`: keys of the one
 * [[app]] (policy, key, ...) with `max_instances` as an object.
 */
function configText({ listen, adminListen, settings, app }) {
  const lines = [`listen = "${listen}"`, `admin_listen = "${adminListen}"`, `admin_token = "${ADMIN_TOKEN}"`];
  for (const [k, v] of Object.entries(settings)) lines.push(`${k} = ${toml(v)}`);
  lines.push("", "[throttle]", "max_failures = 1000", "window_secs = 60");
  const { max_instances: maxInstances = {}, ...rest } = app;
  lines.push("", "[[app]]");
  for (const [k, v] of Object.entries(rest)) lines.push(`${k} = ${toml(v)}`);
  if (Object.keys(maxInstances).length > 0) {
    lines.push("[app.max_instances]");
    for (const [k, v] of Object.entries(maxInstances)) lines.push(`${k} = ${v}`);
  }
  return lines.join("\n") + "\n";
}

function spawnGateway(configPath) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(BIN, ["serve", "--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let done = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`gateway did not print its addresses within 10 s\nstdout: ${out}\nstderr: ${err}`));
    }, 10_000);
    const check = () => {
      const ws = out.match(/listening on ws:\/\/([0-9.]+):(\d+)\/ws/);
      const admin = out.match(/admin listening on http:\/\/([0-9.]+):(\d+)/);
      if (ws && admin && !done) {
        done = true;
        clearTimeout(timer);
        resolvePromise({ child, wsPort: Number(ws[2]), adminPort: Number(admin[2]), stderr: () => err });
      }
    };
    child.stdout.on("data", (d) => {
      out += d;
      check();
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${BIN}: ${e.message} (build it: cargo build --release --bin imgate)`));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (!done) reject(new Error(`gateway exited ${code} before listening\nstderr: ${err}`));
    });
  });
}

/**
 * Starts a gateway. Options: `settings` (top-level config keys), `app` (the [[app]] keys). Returns
 * { url, wsPort, adminUrl, key, sdkAppId, sig(user, expire), kick(), online(), push(), restart(), stop() }.
 */
export async function startGateway({ settings = {}, app = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "imgate-js-"));
  const key = app.key ?? randomBytes(32).toString("hex");
  const appConf = { sdk_app_id: APP_ID, key, ...app };
  const configPath = join(dir, "imgate.toml");
  const baseSettings = { shutdown_grace_secs: 2, ...settings };
  writeFileSync(configPath, configText({ listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", settings: baseSettings, app: appConf }));
  let proc;
  try {
    proc = await spawnGateway(configPath);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const gw = {
    key,
    sdkAppId: appConf.sdk_app_id,
    wsPort: proc.wsPort,
    adminPort: proc.adminPort,
    get url() {
      return `ws://127.0.0.1:${gw.wsPort}/ws`;
    },
    get adminUrl() {
      return `http://127.0.0.1:${gw.adminPort}`;
    },
    get pid() {
      return proc.child.pid;
    },
    /** A UserSig for `user` valid `expire` seconds from now (or from `time`). */
    sig(user, expire = 86400, time) {
      return genUserSig({ sdkAppId: gw.sdkAppId, key: gw.key, userID: user, expire, time });
    },
    async admin(method, path, body) {
      const res = await fetch(gw.adminUrl + path, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = await res.json();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    kick(user, device = {}) {
      return gw.admin("POST", "/v1/kick", { sdk_app_id: gw.sdkAppId, user_id: user, ...device });
    },
    /** GET /v1/online for one user: {user_id, status, instances:[...]} */
    async online(user) {
      const r = await gw.admin("GET", `/v1/online?sdk_app_id=${gw.sdkAppId}&user_id=${encodeURIComponent(user)}`);
      return r.users[0];
    },
    push(to, payload) {
      return gw.admin("POST", "/v1/push", { sdk_app_id: gw.sdkAppId, to, payload });
    },
    /** SIGTERM and wait for the exit; resolves with the exit code. */
    stop() {
      const child = proc.child;
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
      return new Promise((res) => {
        const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
        child.once("exit", (code) => {
          clearTimeout(kill);
          res(code);
        });
        child.kill("SIGTERM");
      });
    },
    /**
     * Stops the gateway (SIGTERM: sockets close 1001) and starts a new process on the same ports,
     * optionally with another app key. `between` runs while no gateway listens.
     */
    async restart({ key: newKey, between } = {}) {
      const code = await gw.stop();
      if (between) await between();
      if (newKey) gw.key = newKey;
      writeFileSync(
        configPath,
        configText({
          listen: `127.0.0.1:${gw.wsPort}`,
          adminListen: `127.0.0.1:${gw.adminPort}`,
          settings: baseSettings,
          app: { ...appConf, key: gw.key },
        }),
      );
      proc = await spawnGateway(configPath);
      return code;
    },
    async close() {
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return gw;
}
