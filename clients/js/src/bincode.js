// The bincode layout of proto/PROTOCOL.md §9 (bincode 2, `config::standard()`): little-endian
// varints, strings as a varint byte length + UTF-8, Option as 00 / 01 + value, an enum as its
// variant index (a varint u32) followed by its fields in declaration order. No dependencies.
//
// Client messages are encoded, server messages decoded; both take and give the JSON shapes of the
// wire (snake_case keys, `type` names), so the rest of the SDK never knows which encoding it speaks.

const PLATFORMS = ["android", "iphone", "ipad", "windows", "mac", "linux", "web"];
const KICK_REASONS = ["multi_device", "replaced", "admin"];
const CLIENT_VARIANTS = ["login", "logout", "get_login_user", "get_login_status", "refresh_sig", "send", "ping"];
const U32_MAX = 0xffffffff;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A malformed binary frame from the server. */
export class BincodeError extends Error {
  constructor(msg) {
    super(`bincode: ${msg}`);
    this.name = "BincodeError";
  }
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  byte(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }
  /** An unsigned varint; `n` is a Number up to 2^53 - 1 (JavaScript's exact integers) or a BigInt. */
  varint(n) {
    if (typeof n === "bigint") {
      if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError(`varint out of range: ${n}`);
      if (n <= BigInt(Number.MAX_SAFE_INTEGER)) return this.varint(Number(n));
      this.reserve(9);
      this.buf[this.len] = 253;
      this.view.setBigUint64(this.len + 1, n, true);
      this.len += 9;
      return;
    }
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint out of range: ${n}`);
    if (n < 251) {
      this.byte(n);
    } else if (n <= 0xffff) {
      this.reserve(3);
      this.buf[this.len] = 251;
      this.view.setUint16(this.len + 1, n, true);
      this.len += 3;
    } else if (n <= U32_MAX) {
      this.reserve(5);
      this.buf[this.len] = 252;
      this.view.setUint32(this.len + 1, n, true);
      this.len += 5;
    } else {
      this.reserve(9);
      this.buf[this.len] = 253;
      this.view.setBigUint64(this.len + 1, BigInt(n), true);
      this.len += 9;
    }
  }
  string(s) {
    const bytes = utf8.encode(s);
    this.varint(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  optionString(s) {
    if (s === null || s === undefined) {
      this.byte(0);
    } else {
      this.byte(1);
      this.string(s);
    }
  }
  bytes() {
    return this.buf.slice(0, this.len);
  }
}

class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  need(n, what) {
    if (this.pos + n > this.buf.length) throw new BincodeError(`truncated ${what}`);
  }
  u8(what) {
    this.need(1, what);
    return this.buf[this.pos++];
  }
  /** A varint of at most `bits` bits (32 or 64), as a Number (refused above 2^53 - 1). */
  varint(bits, what) {
    const b = this.u8(what);
    if (b < 251) return b;
    if (b === 251) {
      this.need(2, what);
      const v = this.view.getUint16(this.pos, true);
      this.pos += 2;
      return v;
    }
    if (b === 252) {
      this.need(4, what);
      const v = this.view.getUint32(this.pos, true);
      this.pos += 4;
      return v;
    }
    if (b === 253 && bits === 64) {
      this.need(8, what);
      const v = this.view.getBigUint64(this.pos, true);
      this.pos += 8;
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BincodeError(`${what} above 2^53 - 1`);
      return Number(v);
    }
    throw new BincodeError(`varint marker ${b} invalid for a u${bits} ${what}`);
  }
  string(what) {
    const n = this.varint(64, `${what} length`);
    this.need(n, what);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8Strict.decode(bytes);
    } catch {
      throw new BincodeError(`${what} is not UTF-8`);
    }
  }
  option(what, read) {
    const tag = this.u8(`${what} tag`);
    if (tag === 0) return null;
    if (tag === 1) return read();
    throw new BincodeError(`option tag ${tag} of ${what}`);
  }
  platform(what) {
    const i = this.varint(32, what);
    if (i >= PLATFORMS.length) throw new BincodeError(`unknown platform ${i}`);
    return PLATFORMS[i];
  }
}

/** Encodes a client message (the JSON shape: `{type:"login", seq, sdk_app_id, ...}`). */
export function encodeClientBincode(msg) {
  const w = new Writer();
  const variant = CLIENT_VARIANTS.indexOf(msg.type);
  if (variant < 0) throw new TypeError(`unknown client message type ${msg.type}`);
  w.varint(variant);
  w.varint(msg.seq);
  switch (msg.type) {
    case "login":
      w.varint(msg.sdk_app_id);
      w.string(msg.user_id);
      w.string(msg.user_sig);
      w.string(msg.platform);
      w.optionString(msg.instance_id);
      break;
    case "refresh_sig":
      w.string(msg.user_sig);
      break;
    case "send":
      w.string(msg.to);
      w.string(msg.payload);
      break;
    default:
      break;
  }
  return w.bytes();
}

function readResponseData(r) {
  const variant = r.varint(32, "ResponseData variant");
  switch (variant) {
    case 0:
      return {
        user_id: r.string("user_id"),
        platform: r.platform("platform"),
        instance_id: r.option("instance_id", () => r.string("instance_id")),
        expire_at: r.varint(64, "expire_at"),
      };
    case 1:
      return { user_id: r.string("user_id") };
    case 2:
      return { expire_at: r.varint(64, "expire_at") };
    case 3:
      return { status: r.u8("status") };
    case 4:
      return { delivered: r.varint(32, "delivered") };
    case 5:
      return { server_time_ms: r.varint(64, "server_time_ms") };
    case 6:
      return null; // Empty: JSON "data":null
    default:
      throw new BincodeError(`unknown ResponseData variant ${variant}`);
  }
}

/**
 * Decodes one server message from a binary frame (Uint8Array, ArrayBuffer or a Node Buffer) into its
 * JSON shape. A failure response has no `data` key; a logout answer has `data: null`. Throws
 * `BincodeError` on anything PROTOCOL.md §9.5 calls an error (trailing bytes included).
 */
export function decodeServerBincode(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const r = new Reader(bytes);
  const variant = r.varint(32, "ServerMsg variant");
  let msg;
  switch (variant) {
    case 0: {
      msg = { type: "response", seq: r.varint(64, "seq"), code: r.varint(32, "code"), desc: r.string("desc") };
      const tag = r.u8("data tag");
      if (tag === 1) msg.data = readResponseData(r);
      else if (tag !== 0) throw new BincodeError(`option tag ${tag} of data`);
      break;
    }
    case 1: {
      const reason = r.varint(32, "kick reason");
      if (reason >= KICK_REASONS.length) throw new BincodeError(`unknown kick reason ${reason}`);
      msg = {
        type: "kicked_offline",
        reason: KICK_REASONS[reason],
        by_platform: r.option("by_platform", () => r.platform("by_platform")),
      };
      break;
    }
    case 2:
      msg = { type: "user_sig_expired" };
      break;
    case 3:
      msg = {
        type: "message",
        from: r.string("from"),
        from_platform: r.option("from_platform", () => r.platform("from_platform")),
        payload: r.string("payload"),
      };
      break;
    default:
      throw new BincodeError(`unknown ServerMsg variant ${variant}`);
  }
  if (r.pos !== bytes.length) throw new BincodeError(`${bytes.length - r.pos} trailing bytes`);
  return msg;
}
