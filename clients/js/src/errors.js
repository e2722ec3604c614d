// Codes and the error type of the SDK. The numbers are Tencent's: the gateway's own codes (contract
// §2, §6, §16) and the client-side ones of Tencent's web SDK (6013, 6014, 6023, 7501, 9508).

/** Every code an `ImgateError` or an `error` event may carry. */
export const ErrorCode = Object.freeze({
  OK: 0,
  // SDK codes (raised by the client itself)
  DESTROYED: 6013, // the client was destroyed; pending calls reject with it
  NOT_LOGGED_IN: 6014, // the call needs a logged-in session (also answered by the gateway)
  INVALID_PARAMETERS: 6017, // a bad argument or option (also answered by the gateway)
  LOGIN_CANCELLED: 6023, // logout() while a login was in progress
  LOGIN_IN_PROGRESS: 7501, // login() while another login is in progress
  NOT_CONNECTED: 9508, // no link within requestTimeoutMs, or the link was lost with the call on it
  // gateway codes
  INVALID_USER_ID: 7003,
  RATE_LIMITED: 7008, // max_requests_per_sec (contract §16)
  USER_SIG_EXPIRED: 70001,
  USER_SIG_EMPTY: 70002,
  USER_SIG_UNDECODABLE: 70003,
  USER_SIG_WRONG_KEY: 70009,
  USER_SIG_WRONG_USER: 70013,
  USER_SIG_WRONG_APP: 70014,
  APP_NOT_CONFIGURED: 70020,
  THROTTLED: 70050,
  USER_SIG_REVOKED: 70052,
  PRESENCE_UNAVAILABLE: 70169,
  // WebSocket close codes, as the `code` of an `error` event
  CLOSE_UNDECODABLE: 1007, // the gateway could not decode a frame (a client bug)
  CLOSE_RATE_LIMIT: 1008, // max_frames_per_sec exceeded
  CLOSE_TOO_BIG: 1009, // a frame larger than the gateway's max_frame_bytes (a client bug)
});

/** The rejection of every SDK call: `code` is a number of `ErrorCode`, `desc` a human text. */
export class ImgateError extends Error {
  constructor(code, desc) {
    super(`${desc} (${code})`);
    this.name = "ImgateError";
    this.code = code;
    this.desc = desc;
  }
}
