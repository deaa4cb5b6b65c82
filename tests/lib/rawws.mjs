// A raw WebSocket client for hostile-input tests: it writes frames byte by byte as told
// (masking, RSV bits, fragmentation, opcodes) and parses what comes back.
import net from 'node:net';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { sleep } from './harness.mjs';

export function frame(opcode, payload, { fin = true, mask = true, rsv = 0, len7 } = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? '');
  const n = p.length;
  const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode)];
  let ext = Buffer.alloc(0);
  if (len7 !== undefined) head.push((mask ? 0x80 : 0) | len7);
  else if (n < 126) head.push((mask ? 0x80 : 0) | n);
  else if (n < 65536) { head.push((mask ? 0x80 : 0) | 126); ext = Buffer.alloc(2); ext.writeUInt16BE(n); }
  else { head.push((mask ? 0x80 : 0) | 127); ext = Buffer.alloc(8); ext.writeBigUInt64BE(BigInt(n)); }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, p]);
  const key = crypto.randomBytes(4), body = Buffer.from(p);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

export class RawWs {
  // TLS: {ca} connects over TLS to "localhost" trusting CA.
  static async open(port, path, { headers = '', expect101 = true, tls: tlsOpts } = {}) {
    const ws = new RawWs();
    ws.sock = tlsOpts ? tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: tlsOpts.ca })
      : net.connect(port, '127.0.0.1');
    ws.buf = Buffer.alloc(0);
    ws.frames = [];
    ws.closed = false;
    ws.waiters = [];
    ws.key = crypto.randomBytes(16).toString('base64');
    ws.sock.on('data', (d) => { ws.buf = Buffer.concat([ws.buf, d]); ws.parse(); });
    ws.sock.on('close', () => { ws.closed = true; ws.wake(); });
    ws.sock.on('error', () => {});
    await new Promise((r, j) => { ws.sock.on(tlsOpts ? 'secureConnect' : 'connect', r); ws.sock.on('error', j); });
    ws.sock.write(`GET ${path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${ws.key}\r\n${headers}\r\n`);
    const t0 = Date.now();
    while (!ws.head && !ws.closed && Date.now() - t0 < 3000) await sleep(10);
    if (expect101 && (!ws.head || !/^HTTP\/1.1 101/.test(ws.head))) throw new Error(`no 101: ${ws.head}`);
    return ws;
  }
  wake() { const w = this.waiters; this.waiters = []; w.forEach((f) => f()); }
  parse() {
    if (!this.head) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      this.head = this.buf.subarray(0, i + 4).toString('latin1');
      this.buf = this.buf.subarray(i + 4);
      if (!/^HTTP\/1.1 101/.test(this.head)) { this.rest = this.buf; return; }
    }
    for (;;) {
      if (this.buf.length < 2) break;
      const b0 = this.buf[0], b1 = this.buf[1];
      let n = b1 & 0x7f, off = 2;
      if (n === 126) { if (this.buf.length < 4) break; n = this.buf.readUInt16BE(2); off = 4; }
      else if (n === 127) { if (this.buf.length < 10) break; n = Number(this.buf.readBigUInt64BE(2)); off = 10; }
      if (b1 & 0x80) off += 4;
      if (this.buf.length < off + n) break;
      const payload = this.buf.subarray(off, off + n);
      this.frames.push({ fin: !!(b0 & 0x80), opcode: b0 & 0x0f, masked: !!(b1 & 0x80), payload: Buffer.from(payload), text: payload.toString('utf8') });
      this.buf = this.buf.subarray(off + n);
    }
    this.wake();
  }
  send(buf) { this.sock.write(buf); }
  sendText(s) { this.send(frame(1, s)); }
  // Waits for a frame matching PRED (default: any new one) and returns it.
  async next(pred = () => true, timeout = 3000) {
    const t0 = Date.now();
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.closed || Date.now() - t0 > timeout) return null;
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
  }
  // The response to call SEQ (never a PUBLISH push, whose id may equal a seq).
  async json(seq, timeout) {
    const f = await this.next((x) => x.opcode === 1 && (() => { try { const a = JSON.parse(x.text); return a[0] === seq && a[1] !== 'PUBLISH'; } catch { return false; } })(), timeout);
    return f ? JSON.parse(f.text) : null;
  }
  async closeFrame(timeout = 3000) {
    const f = await this.next((x) => x.opcode === 8, timeout);
    return f ? { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString() } : null;
  }
  async waitClosed(timeout = 3000) { const t0 = Date.now(); while (!this.closed && Date.now() - t0 < timeout) await sleep(10); return this.closed; }
  destroy() { this.sock.destroy(); }
}

// A user JWT for the reference backend (protocol.md 3.4).
export function userToken(appId, userId, key, extra = {}) {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const h = b({ alg: 'HS256', typ: 'JWT' }), p = b({ iss: appId, sub: userId, tokenType: 'user', ...extra });
  return `${h}.${p}.${crypto.createHmac('sha256', key).update(`${h}.${p}`).digest('base64url')}`;
}
