// ImgateClient: the client half of imgate's login protocol (contract §13), for browsers and Node.
//
// One client holds at most one socket (a "link") and at most one session. The state the app sees is
// `#status` (1 logged in, 2 logging in, 3 logged out) and `#net`; everything else follows from three
// facts: the session to keep (`#session`, present while the app is logged in, across link losses),
// the login in progress (`#op`, the app's own `login()` call) and the current link (`#link`).
//
// Rules of thumb the code keeps everywhere:
// - Every callback of a socket first checks that its link is still the current one: events of an
//   abandoned socket are ignored (contract §13 rule 5).
// - Responses are handled synchronously in the socket's message event (never in a promise
//   continuation), so a push that follows a response in the same read sees the state that response
//   made.
// - Events are queued and dispatched from a microtask, after the state change that caused them is
//   complete; an app handler that throws (or rejects) is reported on `console.error` and never
//   reaches the state machine.
// - Every timer is kept in a field or on its link and cleared by `destroy()`; no timer is created
//   once the client is destroyed.

import { decodeServer, encodeClient } from "./codec.js";
import { ErrorCode, ImgateError } from "./errors.js";

/** `getLoginStatus()` values, Tencent's names. */
export const LoginStatus = Object.freeze({ LOGINED: 1, LOGINING: 2, LOGOUT: 3 });

/** `getNetState()` values. */
export const NetState = Object.freeze({
  CONNECTED: "connected",
  CONNECTING: "connecting",
  DISCONNECTED: "disconnected",
});

/** The platforms of contract §1. */
export const PLATFORMS = Object.freeze(["android", "iphone", "ipad", "windows", "mac", "linux", "web"]);

/** The events `on()` accepts. */
export const EVENTS = Object.freeze([
  "loginStatusChanged",
  "netStateChanged",
  "kickedOffline",
  "userSigExpired",
  "message",
  "error",
]);

const DEFAULTS = Object.freeze({
  platform: "web",
  instanceId: "auto",
  encoding: "json",
  minReconnectDelayMs: 500,
  maxReconnectDelayMs: 20000,
  requestTimeoutMs: 5000,
  pingIntervalMs: 25000,
});

/** A re-login that stays up this long resets the backoff exponent (rule 4). */
const STABLE_MS = 5000;
/** setTimeout fires at once above 2^31 - 1 ms: longer waits are done in steps of this. */
const MAX_TIMER_MS = 2 ** 30;
/** A failed refresh is retried at half the remaining life while more than this is left. */
const REFRESH_RETRY_FLOOR_MS = 2000;
const SESSION_STORAGE_KEY = "imgate.instanceId";

const USER_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;
const INSTANCE_ID_RE = /^[\x21-\x7e]{1,64}$/;

/** A user id of contract §1: 1 to 32 bytes of `[A-Za-z0-9_-]`. */
export function isValidUserID(v) {
  return typeof v === "string" && USER_ID_RE.test(v);
}

/** An instance id of contract §1: 1 to 64 bytes of printable ASCII without space. */
export function isValidInstanceId(v) {
  return typeof v === "string" && INSTANCE_ID_RE.test(v);
}

/**
 * How long before expiry the refresh runs, for a ticket with `lifeMs` left (rule 6):
 * min(max(90 s, L/10), L/2). Exported for the tests only (not from index.js).
 */
export function refreshLeadMs(lifeMs) {
  return Math.min(Math.max(90_000, lifeMs / 10), lifeMs / 2);
}

const monotonic = () => globalThis.performance.now();
const noop = () => {};

function randomInstanceId() {
  const bytes = new Uint8Array(12);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return "i-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `instanceId: "auto"`: per tab in a browser (sessionStorage survives a reload), per client elsewhere. */
function autoInstanceId(sdkAppId) {
  const key = `${SESSION_STORAGE_KEY}.${sdkAppId}`;
  try {
    const store = globalThis.sessionStorage;
    if (store) {
      let id = store.getItem(key);
      if (!isValidInstanceId(id)) {
        id = randomInstanceId();
        store.setItem(key, id);
      }
      return id;
    }
  } catch {
    // storage blocked (sandboxed iframe, privacy settings): one id for this client then
  }
  return randomInstanceId();
}

function invalid(desc) {
  return new ImgateError(ErrorCode.INVALID_PARAMETERS, desc);
}

function checkOptions(options) {
  if (options === null || typeof options !== "object") throw invalid("options must be an object");
  const o = { ...DEFAULTS };
  for (const [k, v] of Object.entries(options)) if (v !== undefined) o[k] = v;
  if (typeof o.url !== "string" || o.url === "") throw invalid("url must be the gateway's ws:// or wss:// URL");
  let parsed;
  try {
    parsed = new URL(o.url, globalThis.location?.href);
  } catch {
    throw invalid(`url ${JSON.stringify(o.url)} is not a URL`);
  }
  if (!["ws:", "wss:", "http:", "https:"].includes(parsed.protocol)) throw invalid(`url ${o.url} is not ws:// or wss://`);
  if (!Number.isSafeInteger(o.sdkAppId) || o.sdkAppId < 0) throw invalid("sdkAppId must be a non-negative integer");
  if (!PLATFORMS.includes(o.platform)) throw invalid(`platform must be one of ${PLATFORMS.join(", ")}`);
  if (o.instanceId !== null && o.instanceId !== "auto" && !isValidInstanceId(o.instanceId)) {
    throw invalid('instanceId must be "auto", null, or 1 to 64 printable ASCII characters without space');
  }
  if (o.getUserSig !== undefined && o.getUserSig !== null && typeof o.getUserSig !== "function") {
    throw invalid("getUserSig must be a function");
  }
  if (o.encoding !== "json" && o.encoding !== "bincode") throw invalid('encoding must be "json" or "bincode"');
  if (o.WebSocket === undefined) o.WebSocket = globalThis.WebSocket;
  if (typeof o.WebSocket !== "function") {
    throw invalid("no WebSocket constructor: pass one as the WebSocket option (in Node: the ws package's)");
  }
  for (const k of ["minReconnectDelayMs", "maxReconnectDelayMs", "requestTimeoutMs", "pingIntervalMs"]) {
    if (typeof o[k] !== "number" || !Number.isFinite(o[k]) || o[k] < 0) throw invalid(`${k} must be a number >= 0`);
  }
  if (o.maxReconnectDelayMs < o.minReconnectDelayMs) throw invalid("maxReconnectDelayMs must be >= minReconnectDelayMs");
  if (o.requestTimeoutMs <= 0 || o.pingIntervalMs <= 0) throw invalid("requestTimeoutMs and pingIntervalMs must be > 0");
  return o;
}

function reportHandlerError(event, err) {
  try {
    console.error(`imgate: a "${event}" handler threw:`, err);
  } catch {
    // a console that throws: nothing left to tell
  }
}

export class ImgateClient {
  #o;
  #instanceId;
  #handlers = new Map();
  #events = [];
  #flushScheduled = false;
  #status = LoginStatus.LOGOUT;
  #net = NetState.DISCONNECTED;
  #destroyed = false;
  /** {userID, userSig, expireAt}: the session to keep while the app is logged in. */
  #session = null;
  /** The app's login() in progress: {userID, userSig, resolve, reject, switching, sent, deadline}. */
  #op = null;
  /** The current link: {sock, open, authed, pending, lastInbound, pingTimer, openTimer, upSince, role, dead}. */
  #link = null;
  /** Links closing politely after logout (their pending calls still get their answers). */
  #draining = new Set();
  /** Calls waiting for a logged-in link: [{msg, onReply, onFail, timer}]. */
  #waiting = [];
  #seq = 0;
  #attempt = 0;
  #reconnectTimer = null;
  #refreshTimer = null;
  #refreshAt = 0;
  /** The gateway's clock minus ours (Date.now), in ms; null until a ping measured it. */
  #clockOffsetMs = null;
  /** Whether the current automatic re-login already asked getUserSig({reason:"expired"}). */
  #expiredRetry = false;

  /**
   * @param {object} options see index.d.ts (ImgateClientOptions); a bad option throws an
   *   ImgateError with code 6017 at once.
   */
  constructor(options) {
    this.#o = checkOptions(options);
    this.#instanceId = this.#o.instanceId === "auto" ? autoInstanceId(this.#o.sdkAppId) : this.#o.instanceId;
    for (const e of EVENTS) this.#handlers.set(e, new Set());
  }

  // ---- public API ------------------------------------------------------------------------------

  /** The instance id this client logs in with (resolved from "auto"), or null. */
  get instanceId() {
    return this.#instanceId;
  }

  /** The platform this client logs in with. */
  get platform() {
    return this.#o.platform;
  }

  login(userID, userSig) {
    if (this.#destroyed) return this.#rejectDestroyed();
    if (typeof userID !== "string") return Promise.reject(invalid("userID must be a string"));
    if (!isValidUserID(userID)) {
      return Promise.reject(new ImgateError(ErrorCode.INVALID_USER_ID, "userID must be 1 to 32 characters of A-Z a-z 0-9 _ -"));
    }
    if (typeof userSig !== "string") return Promise.reject(invalid("userSig must be a string"));
    if (userSig === "") return Promise.reject(new ImgateError(ErrorCode.USER_SIG_EMPTY, "UserSig is empty"));
    if (this.#status === LoginStatus.LOGINING) {
      return Promise.reject(new ImgateError(ErrorCode.LOGIN_IN_PROGRESS, "a login is already in progress"));
    }
    if (this.#status === LoginStatus.LOGINED && this.#session.userID === userID) {
      return Promise.resolve(this.#sessionInfo());
    }
    return new Promise((resolve, reject) => {
      const switching = this.#status === LoginStatus.LOGINED;
      const op = { userID, userSig, resolve, reject, switching, sent: false, deadline: null };
      this.#op = op;
      this.#setStatus(LoginStatus.LOGINING);
      if (switching) this.#switchAccount(op);
      else this.#startFirstLogin(op);
    });
  }

  logout() {
    if (this.#destroyed) return this.#rejectDestroyed();
    const op = this.#op;
    const link = this.#link;
    this.#op = null;
    if (op) clearTimeout(op.deadline);
    this.#session = null;
    this.#link = null;
    this.#clearTimers();
    this.#rejectWaiting(ErrorCode.NOT_LOGGED_IN, "logged out");
    this.#setStatus(LoginStatus.LOGOUT);
    this.#setNet(NetState.DISCONNECTED);
    if (op) op.reject(new ImgateError(ErrorCode.LOGIN_CANCELLED, "login cancelled by logout"));
    if (!link) return Promise.resolve();
    if (!(link.open && link.authed)) {
      this.#abandon(link, "close");
      this.#failPending(link, ErrorCode.NOT_LOGGED_IN, "logged out");
      return Promise.resolve();
    }
    // Log out on the gateway (a Logout webhook rather than a LinkClose), then close with 1000.
    // Calls already on this socket keep their answers: they come before the logout's.
    link.dead = true;
    clearTimeout(link.pingTimer);
    this.#draining.add(link);
    return new Promise((resolve) => {
      const done = () => {
        this.#draining.delete(link);
        this.#abandon(link, "close");
        resolve();
      };
      this.#request(link, { type: "logout" }, done, done);
    });
  }

  getLoginUser() {
    return this.#session ? this.#session.userID : "";
  }

  getLoginStatus() {
    return this.#status;
  }

  getNetState() {
    return this.#net;
  }

  refreshUserSig(userSig) {
    if (this.#destroyed) return this.#rejectDestroyed();
    if (typeof userSig !== "string") return Promise.reject(invalid("userSig must be a string"));
    if (userSig === "") return Promise.reject(new ImgateError(ErrorCode.USER_SIG_EMPTY, "UserSig is empty"));
    const s = this.#session;
    if (!s) return Promise.reject(new ImgateError(ErrorCode.NOT_LOGGED_IN, "not logged in"));
    return new Promise((resolve, reject) => {
      this.#call(
        { type: "refresh_sig", user_sig: userSig },
        (resp) => {
          if (resp.code !== 0) return reject(new ImgateError(resp.code, resp.desc));
          if (this.#session === s) {
            s.userSig = userSig;
            s.expireAt = resp.data.expire_at;
            this.#planRefresh(s);
          }
          resolve({ expireAt: resp.data.expire_at });
        },
        reject,
      );
    });
  }

  send(to, payload) {
    if (this.#destroyed) return this.#rejectDestroyed();
    if (typeof to !== "string") return Promise.reject(invalid("to must be a string"));
    if (!isValidUserID(to)) return Promise.reject(new ImgateError(ErrorCode.INVALID_USER_ID, "to must be a valid user id"));
    if (typeof payload !== "string") return Promise.reject(invalid("payload must be a string"));
    if (!this.#session && !this.#op) return Promise.reject(new ImgateError(ErrorCode.NOT_LOGGED_IN, "not logged in"));
    return new Promise((resolve, reject) => {
      this.#call(
        { type: "send", to, payload },
        (resp) => (resp.code === 0 ? resolve({ delivered: resp.data.delivered }) : reject(new ImgateError(resp.code, resp.desc))),
        reject,
      );
    });
  }

  ping() {
    if (this.#destroyed) return this.#rejectDestroyed();
    if (!this.#session && !this.#op) return Promise.reject(new ImgateError(ErrorCode.NOT_LOGGED_IN, "not logged in"));
    const t0 = Date.now();
    return new Promise((resolve, reject) => {
      this.#call(
        { type: "ping" },
        (resp) => {
          if (resp.code !== 0) return reject(new ImgateError(resp.code, resp.desc));
          this.#learnClock(t0, resp.data.server_time_ms);
          resolve({ serverTimeMs: resp.data.server_time_ms });
        },
        reject,
      );
    });
  }

  destroy() {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const err = () => new ImgateError(ErrorCode.DESTROYED, "client destroyed");
    const op = this.#op;
    this.#op = null;
    if (op) {
      clearTimeout(op.deadline);
      op.reject(err());
    }
    this.#clearTimers();
    for (const w of this.#waiting.splice(0)) {
      clearTimeout(w.timer);
      w.onFail(err());
    }
    const links = [...this.#draining];
    if (this.#link) links.push(this.#link);
    this.#link = null;
    this.#draining.clear();
    for (const link of links) {
      this.#abandon(link, "close");
      this.#failPending(link, ErrorCode.DESTROYED, "client destroyed");
    }
    this.#session = null;
    this.#status = LoginStatus.LOGOUT;
    this.#net = NetState.DISCONNECTED;
    this.#events.length = 0;
    for (const set of this.#handlers.values()) set.clear();
  }

  on(event, fn) {
    this.#handlerSet(event, fn).add(fn);
    return this;
  }

  off(event, fn) {
    this.#handlerSet(event, fn).delete(fn);
    return this;
  }

  // ---- events ----------------------------------------------------------------------------------

  #handlerSet(event, fn) {
    const set = this.#handlers.get(event);
    if (!set) throw invalid(`unknown event ${JSON.stringify(event)}; events: ${EVENTS.join(", ")}`);
    if (typeof fn !== "function") throw invalid("the handler must be a function");
    return set;
  }

  #emit(name, payload) {
    if (this.#destroyed) return;
    this.#events.push([name, Object.freeze(payload)]);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => this.#flushEvents());
  }

  #flushEvents() {
    this.#flushScheduled = false;
    while (this.#events.length > 0) {
      const [name, payload] = this.#events.shift();
      for (const fn of [...this.#handlers.get(name)]) {
        try {
          const r = fn(payload);
          if (r !== null && typeof r === "object" && typeof r.then === "function") {
            r.then(noop, (e) => reportHandlerError(name, e));
          }
        } catch (e) {
          reportHandlerError(name, e);
        }
      }
    }
  }

  #setStatus(status) {
    if (status === this.#status) return;
    const prev = this.#status;
    this.#status = status;
    this.#emit("loginStatusChanged", { status, prev });
  }

  #setNet(state) {
    if (state === this.#net) return;
    this.#net = state;
    this.#emit("netStateChanged", { state });
  }

  // ---- the app's login -------------------------------------------------------------------------

  #sessionInfo() {
    const s = this.#session;
    return { userID: s.userID, platform: this.#o.platform, instanceId: this.#instanceId, expireAt: s.expireAt };
  }

  #loginMsg(userID, userSig) {
    return {
      type: "login",
      sdk_app_id: this.#o.sdkAppId,
      user_id: userID,
      user_sig: userSig,
      platform: this.#o.platform,
      instance_id: this.#instanceId,
    };
  }

  /** A login from logged out: open a link (retrying with backoff for requestTimeoutMs), log in. */
  #startFirstLogin(op) {
    this.#attempt = 0;
    op.deadline = setTimeout(() => {
      if (this.#op === op && !op.sent) {
        this.#loginFailed(op, new ImgateError(ErrorCode.NOT_CONNECTED, `no link to the gateway within ${this.#o.requestTimeoutMs} ms`));
      }
    }, this.#o.requestTimeoutMs);
    this.#setNet(NetState.CONNECTING);
    this.#open("login");
  }

  #sendFirstLogin(link, op) {
    clearTimeout(op.deadline);
    op.sent = true;
    this.#request(
      link,
      this.#loginMsg(op.userID, op.userSig),
      (resp) => {
        if (this.#op !== op) return; // cancelled meanwhile
        if (resp.code !== 0) return this.#loginFailed(op, new ImgateError(resp.code, resp.desc));
        this.#op = null;
        this.#session = { userID: op.userID, userSig: op.userSig, expireAt: resp.data.expire_at };
        this.#sessionUp(link);
        this.#attempt = 0;
        this.#setStatus(LoginStatus.LOGINED);
        this.#setNet(NetState.CONNECTED);
        op.resolve(this.#sessionInfo());
        this.#flushWaiting(link);
        this.#scheduleRefresh(link);
      },
      (err) => {
        if (this.#op === op) this.#loginFailed(op, err);
      },
    );
  }

  /** A login of another user while logged in: the same socket, no logout first (rule 3). */
  #switchAccount(op) {
    op.sent = true;
    this.#call(
      this.#loginMsg(op.userID, op.userSig),
      (resp, link) => {
        if (this.#op !== op) return;
        if (resp.code !== 0) return this.#loginFailed(op, new ImgateError(resp.code, resp.desc));
        this.#op = null;
        this.#session = { userID: op.userID, userSig: op.userSig, expireAt: resp.data.expire_at };
        this.#sessionUp(link);
        this.#attempt = 0;
        this.#setStatus(LoginStatus.LOGINED);
        op.resolve(this.#sessionInfo());
        this.#scheduleRefresh(link);
      },
      (err) => {
        if (this.#op === op) this.#loginFailed(op, err);
      },
    );
  }

  /** A login that fails changes nothing (rule 1): back to 1 (a switch) or to 3. */
  #loginFailed(op, err) {
    this.#op = null;
    clearTimeout(op.deadline);
    if (op.switching) {
      this.#setStatus(LoginStatus.LOGINED);
    } else {
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      const link = this.#link;
      this.#link = null;
      if (link) {
        this.#abandon(link, "close");
        this.#failPending(link, ErrorCode.NOT_LOGGED_IN, "login failed");
      }
      this.#rejectWaiting(ErrorCode.NOT_LOGGED_IN, "login failed");
      this.#setStatus(LoginStatus.LOGOUT);
      this.#setNet(NetState.DISCONNECTED);
    }
    op.reject(err);
  }

  // ---- links -----------------------------------------------------------------------------------

  /** Opens a new link as the current one. `role`: "login" (the app's first login) or "relogin". */
  #open(role) {
    const link = {
      sock: null,
      open: false,
      authed: false,
      dead: false,
      pending: new Map(),
      lastInbound: 0,
      pingTimer: null,
      openTimer: null,
      upSince: 0,
      role,
    };
    this.#link = link;
    let sock;
    try {
      sock = new this.#o.WebSocket(this.#o.url);
    } catch (e) {
      queueMicrotask(() => this.#linkDown(link, `cannot open a WebSocket: ${e?.message ?? e}`));
      return link;
    }
    link.sock = sock;
    sock.binaryType = "arraybuffer";
    sock.onopen = () => this.#onOpen(link);
    sock.onmessage = (ev) => this.#onMessage(link, ev.data);
    sock.onclose = (ev) => this.#onClose(link, ev.code, ev.reason);
    sock.onerror = noop; // a close event follows; ws (Node) throws on an unhandled error event
    link.openTimer = setTimeout(() => this.#linkDown(link, "connect timeout"), this.#o.requestTimeoutMs);
    return link;
  }

  #onOpen(link) {
    if (link !== this.#link) return;
    clearTimeout(link.openTimer);
    link.openTimer = null;
    link.open = true;
    link.lastInbound = monotonic();
    this.#armPing(link, this.#o.pingIntervalMs);
    if (link.role === "login") {
      const op = this.#op;
      if (op && !op.switching && !op.sent) this.#sendFirstLogin(link, op);
    } else if (this.#session) {
      this.#relogin(link, this.#session);
    }
  }

  #onMessage(link, data) {
    if (link.dead && !this.#draining.has(link)) return;
    link.lastInbound = monotonic();
    let msg;
    try {
      msg = decodeServer(data);
    } catch (e) {
      if (link === this.#link) this.#fatal(link, ErrorCode.CLOSE_UNDECODABLE, e.message);
      return;
    }
    if (msg.type === "response") {
      const p = link.pending.get(msg.seq);
      if (!p) return;
      link.pending.delete(msg.seq);
      clearTimeout(p.timer);
      p.onReply(msg);
      return;
    }
    if (link !== this.#link || !this.#session) return; // pushes of an abandoned socket
    switch (msg.type) {
      case "kicked_offline":
        this.#endSession("kick", { reason: msg.reason, byPlatform: msg.by_platform });
        break;
      case "user_sig_expired":
        this.#sigExpired(link, this.#session);
        break;
      case "message":
        this.#emit("message", { from: msg.from, fromPlatform: msg.from_platform, payload: msg.payload });
        break;
      default:
        break;
    }
  }

  #onClose(link, code, reason) {
    if (link !== this.#link) {
      this.#draining.delete(link);
      this.#failPending(link, ErrorCode.NOT_CONNECTED, "socket closed");
      return;
    }
    const desc = typeof reason === "string" && reason !== "" ? reason : `closed ${code}`;
    if ((code === 4501 || code === 4502) && this.#session && link.authed) {
      // a kick whose push we did not get (rule 5)
      this.#endSession("kick", { reason: code === 4502 ? "admin" : "multi_device", byPlatform: null });
    } else if (code === 1007 || code === 1009) {
      this.#fatal(link, code, desc); // client bugs (rule 7)
    } else {
      if (code === 1008) this.#emit("error", { code: ErrorCode.CLOSE_RATE_LIMIT, desc });
      this.#linkDown(link, `closed ${code}`);
    }
  }

  /**
   * Sends one request on a link. `onReply(response)` runs synchronously in the message event;
   * `onFail(ImgateError)` when the link goes first. No answer within requestTimeoutMs: 9508, and the
   * link is taken for dead.
   */
  #request(link, msg, onReply, onFail) {
    if (this.#destroyed) return onFail(new ImgateError(ErrorCode.DESTROYED, "client destroyed"));
    const seq = ++this.#seq;
    let frame;
    try {
      frame = encodeClient({ type: msg.type, seq, ...msg }, this.#o.encoding);
    } catch (e) {
      return onFail(invalid(`cannot encode ${msg.type}: ${e.message}`));
    }
    const timer = setTimeout(() => {
      if (!link.pending.delete(seq)) return;
      onFail(new ImgateError(ErrorCode.NOT_CONNECTED, `no answer within ${this.#o.requestTimeoutMs} ms`));
      this.#linkDown(link, "a request went unanswered");
    }, this.#o.requestTimeoutMs);
    link.pending.set(seq, { onReply, onFail, timer });
    try {
      link.sock.send(frame);
    } catch (e) {
      link.pending.delete(seq);
      clearTimeout(timer);
      onFail(new ImgateError(ErrorCode.NOT_CONNECTED, `send failed: ${e?.message ?? e}`));
      this.#linkDown(link, "send failed");
    }
  }

  /** A request that needs a logged-in link: now, or once one is back (up to requestTimeoutMs). */
  #call(msg, onReply, onFail) {
    const link = this.#link;
    if (link && link.open && link.authed) {
      this.#request(link, msg, (resp) => onReply(resp, link), onFail);
      return;
    }
    const w = { msg, onReply, onFail, timer: null };
    w.timer = setTimeout(() => {
      const i = this.#waiting.indexOf(w);
      if (i >= 0) this.#waiting.splice(i, 1);
      onFail(new ImgateError(ErrorCode.NOT_CONNECTED, `not connected within ${this.#o.requestTimeoutMs} ms`));
    }, this.#o.requestTimeoutMs);
    this.#waiting.push(w);
  }

  #flushWaiting(link) {
    for (const w of this.#waiting.splice(0)) {
      clearTimeout(w.timer);
      this.#request(link, w.msg, (resp) => w.onReply(resp, link), w.onFail);
    }
  }

  #rejectWaiting(code, desc) {
    for (const w of this.#waiting.splice(0)) {
      clearTimeout(w.timer);
      w.onFail(new ImgateError(code, desc));
    }
  }

  #failPending(link, code, desc) {
    const pending = [...link.pending.values()];
    link.pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.onFail(new ImgateError(code, desc));
    }
  }

  /** Leaves a link: no more of its events count. "close": a polite 1000; "terminate": a dead link. */
  #abandon(link, how) {
    link.dead = true;
    clearTimeout(link.openTimer);
    clearTimeout(link.pingTimer);
    link.openTimer = link.pingTimer = null;
    if (this.#link === link) this.#link = null;
    const sock = link.sock;
    if (!sock) return;
    try {
      if (how === "terminate" && typeof sock.terminate === "function") sock.terminate();
      else sock.close(1000);
    } catch {
      // already closed
    }
  }

  #sessionUp(link) {
    link.authed = true;
    link.upSince = monotonic();
    this.#expiredRetry = false;
  }

  // ---- link loss and reconnection (rule 4) -----------------------------------------------------

  #linkDown(link, why) {
    if (link !== this.#link) {
      if (!this.#draining.has(link)) this.#failPending(link, ErrorCode.NOT_CONNECTED, why);
      return;
    }
    const upFor = link.upSince ? monotonic() - link.upSince : 0;
    this.#abandon(link, "terminate");
    this.#failPending(link, ErrorCode.NOT_CONNECTED, `link lost (${why}) with the call in flight: it may or may not have been applied`);
    const op = this.#op;
    if (op && !op.switching) {
      // the app's first login: retry the link within its deadline; once sent, the failure above ended it
      if (this.#op === op && !op.sent) this.#scheduleReconnect("login");
      return;
    }
    if (!this.#session) {
      this.#setNet(NetState.DISCONNECTED);
      return;
    }
    if (upFor >= STABLE_MS) this.#attempt = 0;
    clearTimeout(this.#refreshTimer); // rescheduled after the re-login, on the server's clock
    this.#refreshTimer = null;
    this.#setNet(NetState.CONNECTING);
    this.#scheduleReconnect("relogin");
  }

  /** Full-jitter exponential backoff: attempt n waits min(max, min + random[0, min * 2^n]). */
  #scheduleReconnect(role) {
    if (this.#destroyed) return;
    clearTimeout(this.#reconnectTimer);
    const n = Math.min(this.#attempt, 40);
    this.#attempt += 1;
    const { minReconnectDelayMs: min, maxReconnectDelayMs: max } = this.#o;
    const delay = Math.min(max, min + Math.random() * min * 2 ** n);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#link || this.#destroyed) return;
      if (role === "login" ? this.#op && !this.#op.switching && !this.#op.sent : this.#session) this.#open(role);
    }, delay);
  }

  /** The automatic login on a new link (or on the same link after user_sig_expired). */
  #relogin(link, s) {
    this.#request(
      link,
      this.#loginMsg(s.userID, s.userSig),
      (resp) => {
        if (link !== this.#link || this.#session !== s) return;
        switch (resp.code) {
          case 0:
            s.expireAt = resp.data.expire_at;
            this.#sessionUp(link);
            this.#setNet(NetState.CONNECTED);
            this.#flushWaiting(link);
            this.#scheduleRefresh(link);
            break;
          case ErrorCode.USER_SIG_EXPIRED:
            if (this.#o.getUserSig && !this.#expiredRetry) {
              this.#expiredRetry = true;
              this.#fetchSig(
                "expired",
                s,
                (sig) => {
                  s.userSig = sig;
                  if (link === this.#link && link.open) this.#relogin(link, s);
                },
                () => this.#endSession("expired", {}),
              );
            } else {
              this.#endSession("expired", {});
            }
            break;
          case ErrorCode.USER_SIG_REVOKED:
            this.#endSession("kick", { reason: "admin", byPlatform: null });
            break;
          case ErrorCode.PRESENCE_UNAVAILABLE:
          case ErrorCode.RATE_LIMITED:
            this.#linkDown(link, `re-login answered ${resp.code}`);
            break;
          default:
            this.#endSession("error", { code: resp.code, desc: resp.desc });
            break;
        }
      },
      noop, // the link went down: #linkDown already took over
    );
  }

  /**
   * The session ends without the app asking: a kick, an expiry, a refused re-login or a client bug.
   * Status 3, no reconnection; the cause's event first, then the state events.
   */
  #endSession(kind, info) {
    if (!this.#session) return;
    this.#session = null;
    const link = this.#link;
    this.#link = null;
    if (link) {
      this.#abandon(link, "close");
      this.#failPending(link, ErrorCode.NOT_LOGGED_IN, "the session ended");
    }
    const op = this.#op;
    this.#op = null;
    if (op) {
      clearTimeout(op.deadline);
      op.reject(new ImgateError(ErrorCode.NOT_LOGGED_IN, "the session ended during the login"));
    }
    this.#clearTimers();
    this.#rejectWaiting(ErrorCode.NOT_LOGGED_IN, "the session ended");
    if (kind === "kick") this.#emit("kickedOffline", info);
    else if (kind === "expired") this.#emit("userSigExpired", info);
    else this.#emit("error", info);
    this.#setStatus(LoginStatus.LOGOUT);
    this.#setNet(NetState.DISCONNECTED);
  }

  /** Closes 1007 and 1009, or a frame we cannot decode: an `error`, status 3, no reconnection. */
  #fatal(link, code, desc) {
    if (this.#session) {
      this.#endSession("error", { code, desc });
      return;
    }
    this.#abandon(link, "close");
    this.#emit("error", { code, desc });
    this.#failPending(link, code, desc); // fails the first login in flight
    if (this.#op && !this.#op.sent) this.#loginFailed(this.#op, new ImgateError(code, desc));
  }

  // ---- heartbeat (rule 4) ----------------------------------------------------------------------

  #armPing(link, delay) {
    if (this.#destroyed || link.dead) return;
    clearTimeout(link.pingTimer);
    link.pingTimer = setTimeout(() => this.#pingCheck(link), delay);
  }

  /** An app-level ping after pingIntervalMs without an inbound frame; unanswered: link loss. */
  #pingCheck(link) {
    link.pingTimer = null;
    if (link.dead || !link.open) return;
    const idle = monotonic() - link.lastInbound;
    if (idle < this.#o.pingIntervalMs) return this.#armPing(link, this.#o.pingIntervalMs - idle);
    const t0 = Date.now();
    this.#request(
      link,
      { type: "ping" },
      (resp) => {
        if (resp.code === 0) this.#learnClock(t0, resp.data.server_time_ms);
        this.#armPing(link, this.#o.pingIntervalMs);
      },
      noop,
    );
  }

  // ---- UserSig refresh and expiry (rules 6, 9) -------------------------------------------------

  #learnClock(t0, serverTimeMs) {
    const t1 = Date.now();
    this.#clockOffsetMs = serverTimeMs - (t0 + t1) / 2;
  }

  #serverNow() {
    return Date.now() + (this.#clockOffsetMs ?? 0);
  }

  /** After a (re)login with getUserSig: learn the server's clock from a ping, then plan the refresh. */
  #scheduleRefresh(link) {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    const s = this.#session;
    if (!this.#o.getUserSig || !s) return;
    const t0 = Date.now();
    this.#request(
      link,
      { type: "ping" },
      (resp) => {
        if (this.#session !== s) return;
        if (resp.code === 0) this.#learnClock(t0, resp.data.server_time_ms);
        this.#planRefresh(s);
      },
      noop, // the link went down; the next re-login plans again
    );
  }

  /** refresh_sig at expireAt - min(max(90 s, L/10), L/2) on the server's clock, L the life left now. */
  #planRefresh(s) {
    if (!this.#o.getUserSig || this.#session !== s) return;
    const expireMs = s.expireAt * 1000;
    const lifeMs = expireMs - this.#serverNow();
    this.#refreshAt = expireMs - refreshLeadMs(lifeMs);
    this.#armRefresh(s);
  }

  #armRefresh(s) {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (this.#destroyed || this.#session !== s) return;
    const delay = this.#refreshAt - this.#serverNow();
    if (delay > MAX_TIMER_MS) {
      this.#refreshTimer = setTimeout(() => this.#armRefresh(s), MAX_TIMER_MS);
    } else {
      this.#refreshTimer = setTimeout(() => this.#refresh(s), Math.max(0, delay));
    }
  }

  #refresh(s) {
    this.#refreshTimer = null;
    if (this.#session !== s) return;
    const failed = (code, desc) => {
      if (this.#session !== s) return;
      this.#emit("error", { code, desc });
      const left = s.expireAt * 1000 - this.#serverNow();
      if (left > REFRESH_RETRY_FLOOR_MS) {
        this.#refreshAt = this.#serverNow() + left / 2;
        this.#armRefresh(s);
      }
    };
    this.#fetchSig(
      "refresh",
      s,
      (sig) =>
        this.#call(
          { type: "refresh_sig", user_sig: sig },
          (resp) => {
            if (this.#session !== s) return;
            if (resp.code !== 0) return failed(resp.code, `refresh_sig: ${resp.desc}`);
            s.userSig = sig;
            s.expireAt = resp.data.expire_at;
            this.#planRefresh(s);
          },
          (err) => failed(err.code, `refresh_sig: ${err.desc}`),
        ),
      (err) => failed(err.code ?? ErrorCode.INVALID_PARAMETERS, `getUserSig failed: ${err.desc ?? err?.message ?? err}`),
    );
  }

  /** user_sig_expired: with getUserSig one fresh ticket and a login on the same socket; else the end. */
  #sigExpired(link, s) {
    link.authed = false; // the gateway logged the session out; the socket stays open
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (!this.#o.getUserSig) return this.#endSession("expired", {});
    this.#expiredRetry = true;
    this.#fetchSig(
      "expired",
      s,
      (sig) => {
        s.userSig = sig;
        if (link === this.#link && link.open) this.#relogin(link, s);
      },
      () => this.#endSession("expired", {}),
    );
  }

  /** Calls the app's getUserSig; `ok(sig)` only while `s` is still the session. */
  #fetchSig(reason, s, ok, fail) {
    let p;
    try {
      p = Promise.resolve(this.#o.getUserSig({ userID: s.userID, reason }));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (sig) => {
        if (this.#destroyed || this.#session !== s) return;
        if (typeof sig !== "string" || sig === "") return fail(invalid("getUserSig gave no UserSig"));
        ok(sig);
      },
      (e) => {
        if (this.#destroyed || this.#session !== s) return;
        fail(e instanceof ImgateError ? e : invalid(`getUserSig failed: ${e?.message ?? e}`));
      },
    );
  }

  // ---- housekeeping ----------------------------------------------------------------------------

  #clearTimers() {
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#refreshTimer);
    this.#reconnectTimer = this.#refreshTimer = null;
  }

  #rejectDestroyed() {
    return Promise.reject(new ImgateError(ErrorCode.DESTROYED, "client destroyed"));
  }
}
