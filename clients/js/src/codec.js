// One codec for both encodings of proto/PROTOCOL.md: JSON in text frames, bincode in binary frames.
// Messages are plain objects in their JSON wire shape (`{type:"send", seq, to, payload}`).

import { BincodeError, decodeServerBincode, encodeClientBincode } from "./bincode.js";

export { BincodeError, decodeServerBincode, encodeClientBincode };

const PLATFORMS = new Set(["android", "iphone", "ipad", "windows", "mac", "linux", "web"]);
const KICK_REASONS = new Set(["multi_device", "replaced", "admin"]);

/** A server frame that is not a message of PROTOCOL.md. */
export class DecodeError extends Error {
  constructor(msg) {
    super(`undecodable server frame: ${msg}`);
    this.name = "DecodeError";
  }
}

/** A client message as a text frame (`"json"`) or a binary frame (`"bincode"`, a Uint8Array). */
export function encodeClient(msg, encoding) {
  if (encoding === "bincode") return encodeClientBincode(msg);
  return JSON.stringify(msg);
}

const isUint = (v, max) => Number.isInteger(v) && v >= 0 && v <= max;
const U32 = 0xffffffff;
const U64 = Number.MAX_SAFE_INTEGER; // what a JavaScript number holds exactly
const isStr = (v) => typeof v === "string";
const isOptPlatform = (v) => v === null || v === undefined || PLATFORMS.has(v);

function checkData(data) {
  if (data === null) return;
  if (typeof data !== "object" || Array.isArray(data)) throw new DecodeError("data is not an object");
  const ok =
    ("expire_at" in data ? isUint(data.expire_at, U64) : true) &&
    ("user_id" in data ? isStr(data.user_id) : true) &&
    ("platform" in data ? PLATFORMS.has(data.platform) : true) &&
    ("instance_id" in data ? data.instance_id === null || isStr(data.instance_id) : true) &&
    ("status" in data ? isUint(data.status, 255) : true) &&
    ("delivered" in data ? isUint(data.delivered, U32) : true) &&
    ("server_time_ms" in data ? isUint(data.server_time_ms, U64) : true);
  if (!ok) throw new DecodeError("a field of data has the wrong type");
}

/** Decodes a JSON text frame from the server; throws DecodeError when it is not a server message. */
export function decodeServerJson(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    throw new DecodeError("not JSON");
  }
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) throw new DecodeError("not an object");
  switch (msg.type) {
    case "response":
      if (!isUint(msg.seq, U64) || !isUint(msg.code, U32) || !isStr(msg.desc)) {
        throw new DecodeError("response without seq, code or desc");
      }
      if ("data" in msg) checkData(msg.data);
      return msg;
    case "kicked_offline":
      if (!KICK_REASONS.has(msg.reason) || !isOptPlatform(msg.by_platform)) {
        throw new DecodeError("kicked_offline with a bad reason or by_platform");
      }
      return { type: msg.type, reason: msg.reason, by_platform: msg.by_platform ?? null };
    case "user_sig_expired":
      return { type: msg.type };
    case "message":
      if (!isStr(msg.from) || !isStr(msg.payload) || !isOptPlatform(msg.from_platform)) {
        throw new DecodeError("message with a bad from, from_platform or payload");
      }
      return { type: msg.type, from: msg.from, from_platform: msg.from_platform ?? null, payload: msg.payload };
    default:
      throw new DecodeError(`unknown type ${JSON.stringify(msg.type)}`);
  }
}

/**
 * Decodes one server frame: a string is JSON, anything else (ArrayBuffer, Uint8Array, Node Buffer)
 * bincode. Throws DecodeError (or BincodeError) on a frame that is not a server message.
 */
export function decodeServer(data) {
  if (typeof data === "string") return decodeServerJson(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return decodeServerBincode(bytes);
  }
  throw new DecodeError(`frame of type ${Object.prototype.toString.call(data)}`);
}
