// Waiting without sleeping as synchronisation: every wait has a deadline and says what it waited for.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` every `interval` ms until it is truthy (returns its value) or `timeout` ms passed. */
export async function waitFor(pred, { timeout = 5000, interval = 10, what = "a condition" } = {}) {
  const end = performance.now() + timeout;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

/** Records every event of a client: `rec.events` is [{name, payload, at}] in order. */
export function record(client, names = ["loginStatusChanged", "netStateChanged", "kickedOffline", "userSigExpired", "message", "error"]) {
  const rec = {
    events: [],
    of(name) {
      return rec.events.filter((e) => e.name === name).map((e) => e.payload);
    },
    names() {
      return rec.events.map((e) => e.name);
    },
    wait(name, { timeout = 5000, count = 1 } = {}) {
      return waitFor(() => rec.of(name).length >= count && rec.of(name)[count - 1], { timeout, what: `${count} ${name} event(s)` });
    },
  };
  for (const name of names) client.on(name, (payload) => rec.events.push({ name, payload, at: performance.now() }));
  return rec;
}

/** Resolves with the error a promise rejects with; fails if it resolves. */
export async function rejection(promise) {
  try {
    const v = await promise;
    throw Object.assign(new Error(`expected a rejection, got ${JSON.stringify(v)}`), { resolved: true });
  } catch (e) {
    if (e.resolved) throw e;
    return e;
  }
}

let counter = 0;
/** A user id no other test of this process uses. */
export function uniqueUser(prefix = "u") {
  counter += 1;
  return `${prefix}${process.pid}_${counter}`;
}
