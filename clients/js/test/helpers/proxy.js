// A TCP proxy between the SDK and the gateway that can fail the link the way networks do:
// cut every connection (the client sees 1006), refuse new ones, black-hole a connection (bytes are
// held back, nothing closes) and later release what it held, or send the client a close frame of
// its own. It also reads the WebSocket frames going through (after the HTTP upgrade) so a test can
// see what the SDK sent, and may rewrite the gateway's text frames.
import net from "node:net";

const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;

/** Parses complete WebSocket frames from `buf`; returns {frames, rest}. */
function parseFrames(buf) {
  const frames = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off];
    const b1 = buf[off + 1];
    let len = b1 & 0x7f;
    let hdr = 2;
    if (len === 126) {
      if (buf.length - off < 4) break;
      len = buf.readUInt16BE(off + 2);
      hdr = 4;
    } else if (len === 127) {
      if (buf.length - off < 10) break;
      len = Number(buf.readBigUInt64BE(off + 2));
      hdr = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const maskOff = off + hdr;
    if (masked) hdr += 4;
    if (buf.length - off < hdr + len) break;
    let payload = Buffer.from(buf.subarray(off + hdr, off + hdr + len));
    if (masked) {
      const mask = buf.subarray(maskOff, maskOff + 4);
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    }
    frames.push({ fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, payload, raw: buf.subarray(off, off + hdr + len) });
    off += hdr + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/** An unmasked (server to client) frame. */
export function serverFrame(opcode, payload) {
  const len = payload.length;
  let hdr;
  if (len < 126) hdr = Buffer.from([0x80 | opcode, len]);
  else if (len < 65536) {
    hdr = Buffer.alloc(4);
    hdr[0] = 0x80 | opcode;
    hdr[1] = 126;
    hdr.writeUInt16BE(len, 2);
  } else {
    hdr = Buffer.alloc(10);
    hdr[0] = 0x80 | opcode;
    hdr[1] = 127;
    hdr.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([hdr, payload]);
}

export function closeFrame(code, reason = "") {
  const r = Buffer.from(reason, "utf8");
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return serverFrame(OP_CLOSE, p);
}

/**
 * One direction of a connection: raw bytes until the end of the HTTP head, then frames.
 * `onFrame(frame)` returns the bytes to forward for that frame.
 */
class Direction {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.head = true;
    this.buf = Buffer.alloc(0);
  }
  push(data) {
    this.buf = Buffer.concat([this.buf, data]);
    const out = [];
    if (this.head) {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return Buffer.alloc(0); // hold the head until it is whole
      out.push(this.buf.subarray(0, end + 4));
      this.buf = this.buf.subarray(end + 4);
      this.head = false;
    }
    const { frames, rest } = parseFrames(this.buf);
    this.buf = Buffer.from(rest);
    for (const f of frames) out.push(this.onFrame(f));
    return Buffer.concat(out);
  }
}

/**
 * Starts a proxy on 127.0.0.1:0 in front of 127.0.0.1:`targetPort`.
 * - `proxy.url`: the WebSocket URL through the proxy.
 * - `proxy.accepted`: connections accepted so far; `proxy.acceptTimes`: when (performance.now()).
 * - `proxy.sent()`: every text or binary message the clients sent, decoded ({conn, text|bytes}).
 * - `proxy.rewriteServerText = (text, conn) => text | null | undefined`: replace, drop or keep.
 */
export async function startProxy(targetPort) {
  const conns = new Set();
  const proxy = {
    port: 0,
    targetPort,
    accepted: 0,
    acceptTimes: [],
    refusing: false,
    clientMessages: [],
    rewriteServerText: null,
    get url() {
      return `ws://127.0.0.1:${proxy.port}/ws`;
    },
    get open() {
      return [...conns].filter((c) => !c.closed);
    },
    /** The JSON messages the clients sent (text frames), parsed. */
    sentJson() {
      return proxy.clientMessages.filter((m) => m.text !== undefined).map((m) => JSON.parse(m.text));
    },
    /** Destroys every open connection: no close frame, the client sees 1006. */
    cutAll() {
      for (const c of conns) c.destroy();
    },
    /** New connections are accepted and closed at once (the upgrade fails). */
    refuse(on = true) {
      proxy.refusing = on;
    },
    /** Holds back every byte of the open connections, both ways, without closing anything. */
    blackholeAll() {
      for (const c of conns) c.held = true;
    },
    /** Delivers what a black-holed connection held, and forwards again. */
    release(c) {
      c.held = false;
      if (c.toServer.length) c.upstream.write(Buffer.concat(c.toServer.splice(0)));
      if (c.toClient.length) c.client.write(Buffer.concat(c.toClient.splice(0)));
      if (c.upstreamClosed) c.client.end();
      if (c.clientClosed) c.upstream.end();
    },
    /** Sends the clients a close frame of the proxy's making, then ends the connections. */
    injectClose(code, reason = "") {
      for (const c of conns) {
        if (c.closed) continue;
        c.upstream.destroy();
        c.client.end(closeFrame(code, reason));
        c.closed = true;
      }
    },
    close() {
      proxy.cutAll();
      return new Promise((r) => server.close(() => r()));
    },
  };

  const server = net.createServer((client) => {
    proxy.accepted += 1;
    proxy.acceptTimes.push(performance.now());
    client.setNoDelay(true);
    if (proxy.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(proxy.targetPort, "127.0.0.1");
    upstream.setNoDelay(true);
    const c = {
      id: proxy.accepted,
      client,
      upstream,
      held: false,
      closed: false,
      toServer: [],
      toClient: [],
      destroy() {
        c.closed = true;
        client.destroy();
        upstream.destroy();
      },
    };
    conns.add(c);
    const c2s = new Direction((f) => {
      if (f.opcode === OP_TEXT) proxy.clientMessages.push({ conn: c.id, text: f.payload.toString("utf8") });
      else if (f.opcode === OP_BINARY) proxy.clientMessages.push({ conn: c.id, bytes: f.payload });
      return f.raw;
    });
    const s2c = new Direction((f) => {
      if (f.opcode === OP_TEXT && !f.rsv1 && proxy.rewriteServerText) {
        const out = proxy.rewriteServerText(f.payload.toString("utf8"), c);
        if (out === null) return Buffer.alloc(0);
        if (typeof out === "string") return serverFrame(OP_TEXT, Buffer.from(out, "utf8"));
      }
      return f.raw;
    });
    client.on("data", (d) => {
      const out = c2s.push(d);
      if (out.length === 0) return;
      if (c.held) c.toServer.push(out);
      else upstream.write(out);
    });
    upstream.on("data", (d) => {
      const out = s2c.push(d);
      if (out.length === 0) return;
      if (c.held) c.toClient.push(out);
      else client.write(out);
    });
    const end = () => {
      if (c.held) return; // a black hole keeps the other side open
      c.destroy();
      conns.delete(c);
    };
    client.on("close", () => {
      c.clientClosed = true;
      end();
    });
    upstream.on("close", () => {
      c.upstreamClosed = true;
      end();
    });
    client.on("error", () => {});
    upstream.on("error", () => {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  proxy.port = server.address().port;
  return proxy;
}
