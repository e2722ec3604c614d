// A reconnect storm: N SDK clients in this Node process log in through one gateway, then the gateway
// restarts (SIGTERM: every socket closed 1001; a new process on the same port, optionally after a
// downtime). Measured from the SIGTERM: the time until every client is logged in again, the spread of
// connection attempts (a histogram per 100 ms), and the new gateway's CPU (from /proc/PID/stat,
// per 100 ms and in total) — with the SDK's full-jitter backoff (its defaults, 500 ms .. 20 s)
// versus immediate reconnection (minReconnectDelayMs = maxReconnectDelayMs = 0).
//
//   node bench/storm.js [--clients 10000] [--mode both|jitter|immediate] [--downtime-ms 0] [--json]
//
// Needs target/release/imgate (or IMGATE_BIN). Loopback only; every wait is bounded.
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import WebSocket from "ws";
import { ImgateClient } from "../src/index.js";
import { genUserSig } from "../test/helpers/usersig.js";

const { values: args } = parseArgs({
  options: {
    clients: { type: "string", default: "10000" },
    mode: { type: "string", default: "both" },
    "downtime-ms": { type: "string", default: "0" },
    "bucket-ms": { type: "string", default: "100" },
    "timeout-s": { type: "string", default: "90" },
    spread: { type: "boolean", default: false }, // bind client sockets to 127.0.0.2-9 (for > 14k)
    json: { type: "boolean", default: false },
  },
});
const N = Number(args.clients);
const DOWNTIME = Number(args["downtime-ms"]);
const BUCKET = Number(args["bucket-ms"]);
const TIMEOUT_MS = Number(args["timeout-s"]) * 1000;
const CLK_TCK = 100; // Linux USER_HZ
const log = (...a) => (args.json ? process.stderr.write(a.join(" ") + "\n") : console.log(...a));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The gateway lives in a worker thread of its own: its restart (SIGTERM, wait for the exit, the
 * downtime, spawn, wait for "listening") and the CPU sampling of the new process (every 20 ms, from
 * /proc/PID/stat) must not wait for the main thread, which is busy with 10,000 clients.
 */
function gatewayWorker(options) {
  const src = `
    const { parentPort, workerData } = require("node:worker_threads");
    const { readFileSync } = require("node:fs");
    const abs = () => performance.timeOrigin + performance.now();
    const ticksOf = (pid) => {
      const st = readFileSync("/proc/" + pid + "/stat", "utf8");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      return Number(f[11]) + Number(f[12]);
    };
    (async () => {
      const { startGateway } = await import(workerData.helper);
      const gw = await startGateway(workerData.options);
      parentPort.postMessage({ ready: { url: gw.url, sdkAppId: gw.sdkAppId, key: gw.key } });
      parentPort.on("message", async (m) => {
        if (m.restart) {
          const t = { sigterm: abs() };
          let samples = [], timer = null;
          await gw.restart({ between: async () => {
            t.oldExited = abs();
            await new Promise((r) => setTimeout(r, m.downtimeMs));
          }});
          t.listening = abs();
          const pid = gw.pid;
          const read = () => { try { samples.push([abs(), ticksOf(pid)]); } catch {} };
          read();
          timer = setInterval(read, 20);
          parentPort.once("message", (m2) => {
            clearInterval(timer);
            read();
            parentPort.postMessage({ restarted: t, samples });
          });
          parentPort.postMessage({ listening: t.listening });
        }
        if (m.close) {
          await gw.close();
          parentPort.postMessage({ closed: true });
        }
      });
    })();`;
  const w = new Worker(src, {
    eval: true,
    workerData: { helper: new URL("../test/helpers/gateway.js", import.meta.url).href, options },
  });
  const next = (key) => new Promise((r) => {
    const on = (m) => {
      if (key in m) {
        w.off("message", on);
        r(m);
      }
    };
    w.on("message", on);
  });
  return {
    ready: next("ready").then((m) => m.ready),
    restart(downtimeMs) {
      const listening = next("listening");
      w.postMessage({ restart: true, downtimeMs });
      return listening;
    },
    async stopSampling() {
      const done = next("restarted");
      w.postMessage({ stopSampling: true });
      return done;
    },
    async close() {
      const done = next("closed");
      w.postMessage({ close: true });
      await done;
      await w.terminate();
    },
  };
}

const absNow = () => performance.timeOrigin + performance.now();

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function runOnce(mode) {
  const gwWorker = gatewayWorker({
    settings: { login_timeout_secs: 30, shutdown_grace_secs: 5, max_connections: 19000 },
    app: { policy: "multi" },
  });
  const ready = await gwWorker.ready;
  const gw = { ...ready, sig: (user) => genUserSig({ sdkAppId: ready.sdkAppId, key: ready.key, userID: user }) };
  const attempts = []; // performance.now() of every WebSocket the SDK opened
  let seq = 0;
  class CountingWebSocket extends WebSocket {
    constructor(url) {
      const opts = { perMessageDeflate: false };
      if (args.spread) opts.localAddress = `127.0.0.${2 + (seq++ % 8)}`;
      super(url, opts);
      attempts.push(performance.now());
    }
  }
  const timing =
    mode === "immediate"
      ? { minReconnectDelayMs: 0, maxReconnectDelayMs: 0 }
      : { minReconnectDelayMs: 500, maxReconnectDelayMs: 20000 }; // the SDK's defaults
  const sigs = Array.from({ length: N }, (_, i) => gw.sig(`s${i}`)); // minted before any clock starts
  const clients = [];
  let restartedAt = Infinity;
  const backAt = new Array(N).fill(0);
  let lost = 0;
  let lostAllAt = NaN;
  const errors = [];
  for (let i = 0; i < N; i++) {
    const c = new ImgateClient({ url: gw.url, sdkAppId: gw.sdkAppId, WebSocket: CountingWebSocket, ...timing });
    c.on("netStateChanged", ({ state }) => {
      if (state === "connecting" && performance.now() > restartedAt) lost += 1;
      // the first "connected" after the SIGTERM: logged in again
      if (state === "connected" && performance.now() > restartedAt && backAt[i] === 0) backAt[i] = performance.now();
    });
    c.on("loginStatusChanged", ({ status }) => {
      if (status === 3 && performance.now() > restartedAt) errors.push(`client ${i} logged out`);
    });
    c.on("error", (e) => errors.push(`client ${i}: ${e.code} ${e.desc}`));
    clients.push(c);
  }

  // phase 1: everyone logs in, 500 at a time
  const t1 = performance.now();
  for (let i = 0; i < N; i += 500) {
    await Promise.all(clients.slice(i, i + 500).map((c, k) => c.login(`s${i + k}`, sigs[i + k])));
  }
  const loginAllMs = performance.now() - t1;
  log(`[${mode}] ${N} clients logged in in ${(loginAllMs / 1000).toFixed(2)} s`);
  await sleep(1000);

  // phase 2: restart
  const attemptsBefore = attempts.length;
  const cpuClient0 = process.cpuUsage();
  restartedAt = performance.now();
  const restartedAbs = absNow();
  const listening = gwWorker.restart(DOWNTIME);
  const allBack = () => backAt.every((t) => t > 0);
  const deadline = restartedAt + TIMEOUT_MS;
  while (!allBack() && performance.now() < deadline) {
    await sleep(BUCKET / 4);
    if (Number.isNaN(lostAllAt) && lost >= N) lostAllAt = performance.now() - restartedAt;
  }
  await listening;
  const doneMs = allBack() ? Math.max(...backAt) - restartedAt : NaN;
  await sleep(5 * BUCKET); // the tail of the gateway's work after the last login
  const { restarted, samples: rawSamples } = await gwWorker.stopSampling();
  const samples = rawSamples.map(([t, ticks]) => [t - restartedAbs, ticks]);
  const oldExitedAt = restarted.oldExited - restartedAbs;
  const listeningAt = restarted.listening - restartedAbs;
  const cpuClient = process.cpuUsage(cpuClient0);
  const relogin = backAt.filter((t) => t > 0).map((t) => t - restartedAt).sort((a, b) => a - b);

  // histograms per bucket
  const stormAttempts = attempts.slice(attemptsBefore).map((t) => t - restartedAt);
  const span = Math.max(doneMs || 0, ...stormAttempts, 0);
  const buckets = Math.ceil(span / BUCKET) + 1;
  const hist = new Array(buckets).fill(0);
  for (const t of stormAttempts) hist[Math.floor(t / BUCKET)] += 1;
  const loginsHist = new Array(buckets).fill(0);
  for (const t of relogin) loginsHist[Math.min(buckets - 1, Math.floor(t / BUCKET))] += 1;
  // gateway CPU % of one core per bucket: each sampling interval's ticks spread over its span
  const cpuTicksPerBucket = new Array(buckets).fill(0);
  for (let k = 1; k < samples.length; k++) {
    const [t0, c0] = samples[k - 1];
    const [t1, c1] = samples[k];
    if (t1 <= t0 || c1 === c0) continue;
    for (let b = Math.max(0, Math.floor(t0 / BUCKET)); b <= Math.floor(t1 / BUCKET) && b < buckets; b++) {
      const overlap = Math.min(t1, (b + 1) * BUCKET) - Math.max(t0, b * BUCKET);
      if (overlap > 0) cpuTicksPerBucket[b] += ((c1 - c0) * overlap) / (t1 - t0);
    }
  }
  const cpu = cpuTicksPerBucket.map((ticks) => Math.round((ticks / CLK_TCK / (BUCKET / 1000)) * 100));
  // everything the new process spent, from its start (its ticks start at 0) to the end of the storm
  const gwCpuS = samples.length ? samples.at(-1)[1] / CLK_TCK : NaN;

  for (const c of clients) c.destroy();
  await gwWorker.close();
  return {
    mode,
    clients: N,
    downtime_ms: DOWNTIME,
    login_all_ms: Math.round(loginAllMs),
    all_lost_ms: Math.round(lostAllAt),
    old_exited_ms: Math.round(oldExitedAt),
    new_listening_ms: Math.round(listeningAt),
    all_back_ms: Math.round(doneMs),
    relogin_p50_ms: Math.round(percentile(relogin, 50)),
    relogin_p99_ms: Math.round(percentile(relogin, 99)),
    back: relogin.length,
    attempts: stormAttempts.length,
    attempts_before_listening: stormAttempts.filter((t) => t < listeningAt).length,
    attempts_per_client: +(stormAttempts.length / N).toFixed(2),
    peak_attempts_per_bucket: Math.max(...hist),
    gateway_peak_cpu_pct: Math.max(...cpu),
    gateway_cpu_s: +gwCpuS.toFixed(2),
    client_cpu_s: +((cpuClient.user + cpuClient.system) / 1e6).toFixed(2),
    errors: errors.length,
    first_errors: errors.slice(0, 3),
    bucket_ms: BUCKET,
    histogram: hist,
    logins_histogram: loginsHist,
    cpu_histogram: cpu,
  };
}

function printRun(r) {
  log(
    `[${r.mode}] after the SIGTERM: every client saw its link go at ${r.all_lost_ms} ms, the old gateway exited at ${r.old_exited_ms} ms, the new one listened at ${r.new_listening_ms} ms`,
  );
  log(
    `[${r.mode}] all ${r.back}/${r.clients} back in ${r.all_back_ms} ms (p50 ${r.relogin_p50_ms}, p99 ${r.relogin_p99_ms}); ` +
      `${r.attempts} attempts (${r.attempts_before_listening} before the new gateway listened; ${r.attempts_per_client}/client, peak ${r.peak_attempts_per_bucket}/${r.bucket_ms} ms); ` +
      `gateway CPU peak ${r.gateway_peak_cpu_pct}% of a core, ${r.gateway_cpu_s} s total; client CPU ${r.client_cpu_s} s; errors ${r.errors}`,
  );
  log(`  t(ms)   attempts  logins  gw-cpu%`);
  for (let b = 0; b < r.histogram.length; b++) {
    if (r.histogram[b] === 0 && r.logins_histogram[b] === 0 && r.cpu_histogram[b] === 0) continue;
    log(`  ${String(b * r.bucket_ms).padStart(5)}  ${String(r.histogram[b]).padStart(9)}  ${String(r.logins_histogram[b]).padStart(6)}  ${String(r.cpu_histogram[b]).padStart(7)}`);
  }
}

const modes = args.mode === "both" ? ["jitter", "immediate"] : [args.mode];
const results = [];
for (const m of modes) {
  const r = await runOnce(m);
  printRun(r);
  results.push(r);
}
if (results.length === 2) {
  const [j, i] = results;
  const ratio = (a, b) => (b ? (a / b).toFixed(2) : "n/a");
  log(
    `jitter / immediate: time to all back ${ratio(j.all_back_ms, i.all_back_ms)}x, attempts ${ratio(j.attempts, i.attempts)}x, ` +
      `peak attempts per ${j.bucket_ms} ms ${ratio(j.peak_attempts_per_bucket, i.peak_attempts_per_bucket)}x, gateway peak CPU ${ratio(j.gateway_peak_cpu_pct, i.gateway_peak_cpu_pct)}x, ` +
      `gateway CPU total ${ratio(j.gateway_cpu_s, i.gateway_cpu_s)}x`,
  );
}
if (args.json) process.stdout.write(JSON.stringify(results, null, 2) + "\n");
