// Clients for the tests: the ws package's WebSocket (Node 20 has none), short timings, and a list
// of every client made so a test's clients are destroyed after it.
import WebSocket from "ws";
import { ImgateClient } from "../../src/index.js";

export const FAST = Object.freeze({
  minReconnectDelayMs: 50,
  maxReconnectDelayMs: 400,
  requestTimeoutMs: 1500,
  pingIntervalMs: 25000,
});

export function clientFactory() {
  const made = [];
  const make = (options) => {
    const c = new ImgateClient({ WebSocket, ...FAST, ...options });
    made.push(c);
    return c;
  };
  make.destroyAll = () => {
    for (const c of made.splice(0)) c.destroy();
  };
  return make;
}
