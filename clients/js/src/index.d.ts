// Hand-written typings of @imgate/client (contract §13).

export type Platform = "android" | "iphone" | "ipad" | "windows" | "mac" | "linux" | "web";
export type Encoding = "json" | "bincode";
export type NetStateValue = "connected" | "connecting" | "disconnected";
export type KickReason = "multi_device" | "replaced" | "admin";

export declare const LoginStatus: Readonly<{ LOGINED: 1; LOGINING: 2; LOGOUT: 3 }>;
export type LoginStatusValue = 1 | 2 | 3;

export declare const NetState: Readonly<{ CONNECTED: "connected"; CONNECTING: "connecting"; DISCONNECTED: "disconnected" }>;

export declare const PLATFORMS: readonly Platform[];
export declare const EVENTS: readonly (keyof ImgateEvents)[];

export declare const ErrorCode: Readonly<{
  OK: 0;
  DESTROYED: 6013;
  NOT_LOGGED_IN: 6014;
  INVALID_PARAMETERS: 6017;
  LOGIN_CANCELLED: 6023;
  LOGIN_IN_PROGRESS: 7501;
  NOT_CONNECTED: 9508;
  INVALID_USER_ID: 7003;
  RATE_LIMITED: 7008;
  USER_SIG_EXPIRED: 70001;
  USER_SIG_EMPTY: 70002;
  USER_SIG_UNDECODABLE: 70003;
  USER_SIG_WRONG_KEY: 70009;
  USER_SIG_WRONG_USER: 70013;
  USER_SIG_WRONG_APP: 70014;
  APP_NOT_CONFIGURED: 70020;
  THROTTLED: 70050;
  USER_SIG_REVOKED: 70052;
  PRESENCE_UNAVAILABLE: 70169;
  CLOSE_UNDECODABLE: 1007;
  CLOSE_RATE_LIMIT: 1008;
  CLOSE_TOO_BIG: 1009;
}>;

/** Every rejection of the SDK. Switch on `code`, never on `desc`. */
export declare class ImgateError extends Error {
  constructor(code: number, desc: string);
  readonly name: "ImgateError";
  readonly code: number;
  readonly desc: string;
}

/** What `getUserSig` is asked for: a ticket to refresh the session before it expires, or to log in again after it expired. */
export interface GetUserSigRequest {
  userID: string;
  reason: "refresh" | "expired";
}

/** The part of the WebSocket API the SDK uses: the browser's `WebSocket` or the `ws` package's. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** ws (Node) only: drop the TCP connection at once; used for dead links. */
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ImgateClientOptions {
  /** The gateway's WebSocket endpoint, e.g. "ws://127.0.0.1:8080/ws". */
  url: string;
  sdkAppId: number;
  /** Default "web". */
  platform?: Platform;
  /** "auto" (default): per browser tab (sessionStorage) or per client in Node; a fixed id; or null for none. */
  instanceId?: "auto" | string | null;
  /** Mints a fresh UserSig (from your backend): enables refresh before expiry and one retry of an expired re-login. */
  getUserSig?: (req: GetUserSigRequest) => string | Promise<string>;
  /** Default "json" (text frames); "bincode" sends binary frames. */
  encoding?: Encoding;
  /** Default globalThis.WebSocket; in Node pass the ws package's WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Backoff floor, default 500. */
  minReconnectDelayMs?: number;
  /** Backoff ceiling, default 20000. */
  maxReconnectDelayMs?: number;
  /** How long a call waits for a link, and for its answer; default 5000. */
  requestTimeoutMs?: number;
  /** An app-level ping after this long without an inbound frame; default 25000. */
  pingIntervalMs?: number;
}

export interface LoginResult {
  userID: string;
  platform: Platform;
  instanceId: string | null;
  /** When the UserSig expires, unix seconds (the gateway's TLS.time + TLS.expire). */
  expireAt: number;
}

export interface ImgateEvents {
  loginStatusChanged: { status: LoginStatusValue; prev: LoginStatusValue };
  netStateChanged: { state: NetStateValue };
  kickedOffline: { reason: KickReason; byPlatform: Platform | null };
  userSigExpired: Record<string, never>;
  message: { from: string; fromPlatform: Platform | null; payload: string };
  error: { code: number; desc: string };
}

export declare class ImgateClient {
  /** Throws an ImgateError with code 6017 on a bad option. */
  constructor(options: ImgateClientOptions);
  /** The instance id this client logs in with ("auto" resolved), or null. */
  readonly instanceId: string | null;
  readonly platform: Platform;
  login(userID: string, userSig: string): Promise<LoginResult>;
  logout(): Promise<void>;
  getLoginUser(): string;
  getLoginStatus(): LoginStatusValue;
  getNetState(): NetStateValue;
  refreshUserSig(userSig: string): Promise<{ expireAt: number }>;
  send(to: string, payload: string): Promise<{ delivered: number }>;
  ping(): Promise<{ serverTimeMs: number }>;
  destroy(): void;
  on<E extends keyof ImgateEvents>(event: E, fn: (payload: ImgateEvents[E]) => unknown): this;
  off<E extends keyof ImgateEvents>(event: E, fn: (payload: ImgateEvents[E]) => unknown): this;
}

export declare function isValidUserID(v: unknown): v is string;
export declare function isValidInstanceId(v: unknown): v is string;

/** Client messages in their JSON wire shape (snake_case keys). */
export type ClientMessage =
  | { type: "login"; seq: number; sdk_app_id: number; user_id: string; user_sig: string; platform: string; instance_id?: string | null }
  | { type: "logout" | "get_login_user" | "get_login_status" | "ping"; seq: number }
  | { type: "refresh_sig"; seq: number; user_sig: string }
  | { type: "send"; seq: number; to: string; payload: string };

export type ServerMessage =
  | { type: "response"; seq: number; code: number; desc: string; data?: Record<string, unknown> | null }
  | { type: "kicked_offline"; reason: KickReason; by_platform: Platform | null }
  | { type: "user_sig_expired" }
  | { type: "message"; from: string; from_platform: Platform | null; payload: string };

/** A text frame (JSON) or a binary frame (bincode, PROTOCOL.md §9). */
export declare function encodeClient(msg: ClientMessage, encoding: Encoding): string | Uint8Array;
/** A string is JSON, bytes are bincode; throws DecodeError / BincodeError on anything else. */
export declare function decodeServer(data: string | ArrayBuffer | ArrayBufferView): ServerMessage;
export declare class DecodeError extends Error {}
export declare class BincodeError extends Error {}
