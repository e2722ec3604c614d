// The imgate console: one page on the SDK to try a gateway in a browser (contract §13 "Console").
// Everything it shows goes through textContent (payloads and user ids are other people's input);
// no inline script or style (the page is served with a strict Content-Security-Policy).
import { ImgateClient, LoginStatus } from "/console/sdk/index.js";

const $ = (id) => document.getElementById(id);
const el = {
  wsUrl: $("ws-url"),
  sdkAppId: $("sdk-app-id"),
  userId: $("user-id"),
  platform: $("platform"),
  instanceId: $("instance-id"),
  userSig: $("user-sig"),
  mint: $("mint"),
  login: $("login"),
  logout: $("logout"),
  loginResult: $("login-result"),
  status: $("status"),
  netState: $("net-state"),
  sendTo: $("send-to"),
  sendPayload: $("send-payload"),
  send: $("send"),
  sendResult: $("send-result"),
  adminToken: $("admin-token"),
  onlineUser: $("online-user"),
  onlineQuery: $("online-query"),
  onlineResult: $("online-result"),
  kick: $("kick"),
  adminResult: $("admin-result"),
  events: $("events"),
  clearEvents: $("clear-events"),
};

const MAX_EVENTS = 500;
let client = null;
let clientKey = "";
let devUserSig = false;

// ---- display --------------------------------------------------------------------------------

function show(node, text, kind = "") {
  node.textContent = text;
  node.className = `result ${kind}`.trim();
}

function describeError(e) {
  if (e && typeof e.code === "number") return `${e.code} ${e.desc ?? e.message}`;
  return String(e?.message ?? e);
}

function logEvent(name, payload) {
  const li = document.createElement("li");
  li.className = name;
  const n = document.createElement("span");
  n.className = "n";
  n.textContent = name;
  const d = document.createElement("span");
  d.className = "d";
  d.textContent = payload === undefined ? "" : JSON.stringify(payload);
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = new Date().toLocaleTimeString();
  li.append(n, " ", d, " ", t);
  el.events.prepend(li);
  while (el.events.childElementCount > MAX_EVENTS) el.events.lastElementChild.remove();
}

const STATUS_TEXT = {
  [LoginStatus.LOGINED]: "logged in",
  [LoginStatus.LOGINING]: "logging in",
  [LoginStatus.LOGOUT]: "logged out",
};

function renderState() {
  const status = client ? client.getLoginStatus() : LoginStatus.LOGOUT;
  const user = client ? client.getLoginUser() : "";
  el.status.textContent = status === LoginStatus.LOGINED ? `logged in as ${user}` : STATUS_TEXT[status];
  el.status.className = `pill ${status === 1 ? "on" : status === 2 ? "busy" : "off"}`;
  const net = client ? client.getNetState() : "disconnected";
  el.netState.textContent = net;
  el.netState.className = `pill ${net === "connected" ? "on" : net === "connecting" ? "busy" : "off"}`;
  el.logout.disabled = status === LoginStatus.LOGOUT;
}

// ---- the client -----------------------------------------------------------------------------

function adminHeaders() {
  const token = el.adminToken.value.trim();
  const h = { "content-type": "application/json" };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: adminHeaders(), body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try {
    json = await res.json();
  } catch {
    // not JSON: reported below with the status
  }
  if (!res.ok) throw new Error(`${res.status}: ${json?.error ?? res.statusText}`);
  return json;
}

function appId() {
  const v = el.sdkAppId.value.trim();
  return /^\d+$/.test(v) ? Number(v) : NaN;
}

function mintSig(userID, expire = 86400) {
  const body = { user_id: userID, expire };
  if (Number.isSafeInteger(appId())) body.sdk_app_id = appId();
  return api("POST", "/v1/dev/usersig", body).then((r) => r.user_sig);
}

/** The client for the settings in the form; a new one when they changed (the old one destroyed). */
function clientForForm() {
  const raw = el.instanceId.value.trim();
  const options = {
    url: el.wsUrl.value.trim(),
    sdkAppId: appId(),
    platform: el.platform.value,
    instanceId: raw === "" ? null : raw,
  };
  const key = JSON.stringify(options);
  if (client && key === clientKey) return client;
  if (client) client.destroy();
  client = null;
  const c = new ImgateClient({
    ...options,
    // with the development minting endpoint, the session refreshes its own UserSig
    getUserSig: devUserSig ? ({ userID }) => mintSig(userID) : undefined,
  });
  c.on("loginStatusChanged", (e) => {
    logEvent("loginStatusChanged", e);
    renderState();
  });
  c.on("netStateChanged", (e) => {
    logEvent("netStateChanged", e);
    renderState();
  });
  for (const name of ["kickedOffline", "userSigExpired", "message", "error"]) c.on(name, (e) => logEvent(name, e));
  client = c;
  clientKey = key;
  return c;
}

async function onLogin() {
  let c;
  try {
    c = clientForForm();
  } catch (e) {
    show(el.loginResult, describeError(e), "bad");
    return;
  }
  renderState();
  show(el.loginResult, "logging in…");
  try {
    const r = await c.login(el.userId.value.trim(), el.userSig.value.trim());
    show(el.loginResult, `logged in as ${r.userID} on ${r.platform} (instance ${r.instanceId ?? "none"}), UserSig expires ${new Date(r.expireAt * 1000).toLocaleString()}`, "ok");
  } catch (e) {
    show(el.loginResult, `login failed: ${describeError(e)}`, "bad");
  }
  renderState();
}

async function onLogout() {
  if (!client) return;
  try {
    await client.logout();
    show(el.loginResult, "logged out", "ok");
  } catch (e) {
    show(el.loginResult, `logout failed: ${describeError(e)}`, "bad");
  }
  renderState();
}

async function onMint() {
  const user = el.userId.value.trim();
  if (!user) return show(el.loginResult, "type a user id first", "bad");
  show(el.loginResult, "minting…");
  try {
    el.userSig.value = await mintSig(user);
    show(el.loginResult, `minted a UserSig for ${user} (valid one day)`, "ok");
  } catch (e) {
    show(el.loginResult, `mint failed: ${describeError(e)}`, "bad");
  }
}

async function onSend() {
  if (!client) return show(el.sendResult, "log in first", "bad");
  try {
    const r = await client.send(el.sendTo.value.trim(), el.sendPayload.value);
    show(el.sendResult, `delivered to ${r.delivered} socket(s)`, "ok");
  } catch (e) {
    show(el.sendResult, `send failed: ${describeError(e)}`, "bad");
  }
}

// ---- admin ----------------------------------------------------------------------------------

function usersInForm() {
  return el.onlineUser.value.split(/[\s,]+/).filter(Boolean);
}

async function onOnlineQuery() {
  const users = usersInForm();
  if (users.length === 0) return show(el.adminResult, "type one or more user ids", "bad");
  const q = new URLSearchParams({ sdk_app_id: el.sdkAppId.value.trim() });
  for (const u of users) q.append("user_id", u);
  try {
    const r = await api("GET", `/v1/online?${q}`);
    el.onlineResult.replaceChildren(
      ...r.users.map((u) => {
        const li = document.createElement("li");
        const status = document.createElement("span");
        status.className = u.status === "Online" ? "Online" : "Offline";
        status.textContent = u.status;
        const platforms = u.instances.map((i) => (i.instance_id ? `${i.platform} (${i.instance_id})` : i.platform)).join(", ");
        li.append(`${u.user_id} `, status, platforms ? ` ${platforms}` : "");
        return li;
      }),
    );
    show(el.adminResult, `queried ${users.length} user(s)`, "ok");
  } catch (e) {
    el.onlineResult.replaceChildren();
    show(el.adminResult, `query failed: ${describeError(e)}`, "bad");
  }
}

async function onKick() {
  const [user] = usersInForm();
  if (!user) return show(el.adminResult, "type the user id to kick", "bad");
  try {
    const r = await api("POST", "/v1/kick", { sdk_app_id: appId(), user_id: user });
    await onOnlineQuery();
    show(el.adminResult, `kicked ${r.kicked} device(s) of ${user}; their UserSigs minted until now are revoked`, "ok");
  } catch (e) {
    show(el.adminResult, `kick failed: ${describeError(e)}`, "bad");
  }
}

// ---- start ----------------------------------------------------------------------------------

async function prefill() {
  el.wsUrl.value = `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:8080/ws`;
  try {
    const res = await fetch("/console/config", { cache: "no-store" });
    const cfg = await res.json();
    if (typeof cfg.ws_url === "string") el.wsUrl.value = cfg.ws_url;
    if (cfg.sdk_app_id !== null && cfg.sdk_app_id !== undefined) el.sdkAppId.value = String(cfg.sdk_app_id);
    if (typeof cfg.admin_token === "string") el.adminToken.value = cfg.admin_token;
    devUserSig = cfg.dev_usersig === true;
  } catch (e) {
    logEvent("error", { code: 0, desc: `cannot read /console/config: ${describeError(e)}` });
  }
  el.mint.disabled = !devUserSig;
  if (!devUserSig) el.mint.title = "this gateway does not mint UserSigs (dev_usersig = true in its config enables it)";
  document.body.dataset.ready = "true";
}

el.login.addEventListener("click", onLogin);
el.logout.addEventListener("click", onLogout);
el.mint.addEventListener("click", onMint);
el.send.addEventListener("click", onSend);
el.onlineQuery.addEventListener("click", onOnlineQuery);
el.kick.addEventListener("click", onKick);
el.clearEvents.addEventListener("click", () => el.events.replaceChildren());
renderState();
prefill();
