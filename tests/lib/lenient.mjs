// A lenient recording backend and the oracle of tests/scenario/security_bypass.test.mjs.
//
// The backend is a plain `net` server: it answers every HTTP request it can read `200 {}`
// (Content-Length framed, keep-alive), accepts WebSocket upgrades (no extension) and answers
// every realtime call frame `[seq,200,{}]`. It records the raw bytes of each connection.
//
// The oracle reads what arrived the way a lenient backend might, in every plausible way, and
// reports each reading that is a forbidden mutation for an app whose switches are both off:
// - the byte stream is split into pipelined requests under four framings (header names with
//   or without `_` read as `-`; Transfer-Encoding or Content-Length first), and a line that is
//   not a request line is skipped to the next line (a parser that resynchronises);
// - the path: segments compared case-insensitively, with `;params` stripped before or after
//   percent-decoding, empty segments dropped; an app id also read with the characters outside
//   [A-Za-z0-9_.-] removed;
// - the method: the request line's (also upper-cased), X-HTTP-Method-Override, X-HTTP-Method,
//   X-Method-Override, and `_method` query parameters;
// - realtime frames: JSON-unescaped (JSON.parse), the same path readings, method upper-cased.
import net from 'node:net';
import crypto from 'node:crypto';
import { sleep } from './harness.mjs';

const READS = new Set(['GET', 'HEAD', 'OPTIONS', 'SUBSCRIBE', 'UNSUBSCRIBE']);
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

// ---- lenient HTTP request parsing ----

// One request at OFF of BUF under framing OPTS: {kind:'incomplete'} | {kind:'junk', next}
// (a line that is not a request line) | {kind:'req', req, next}.
export function parseRequestAt(buf, off, { underscore = false, prefer = 'te' } = {}) {
  while (buf[off] === 0x0d && buf[off + 1] === 0x0a) off += 2;
  if (off >= buf.length) return { kind: 'incomplete', next: off };
  const lineEnd = buf.indexOf('\r\n', off);
  if (lineEnd < 0) return { kind: 'incomplete', next: off };
  const line = buf.toString('latin1', off, lineEnd);
  const m = /^(\S+) +(\S+) +HTTP\/\d\.\d$/i.exec(line);
  if (!m) return { kind: 'junk', next: lineEnd + 2, line };
  const headEnd = buf.indexOf('\r\n\r\n', lineEnd);
  if (headEnd < 0) return { kind: 'incomplete', next: off };
  const headers = headEnd === lineEnd ? [] : buf.toString('latin1', lineEnd + 2, headEnd).split('\r\n').map((l) => {
    const i = l.indexOf(':');
    return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 1).trim()];
  });
  const norm = (n) => { const s = n.trim().toLowerCase(); return underscore ? s.replace(/_/g, '-') : s; };
  const get = (name) => headers.filter(([k]) => norm(k) === name).map(([, v]) => v);
  const te = get('transfer-encoding'), cl = get('content-length');
  const chunked = te.some((v) => /chunked/i.test(v));
  const req = { method: m[1], target: m[2], line, headers, body: Buffer.alloc(0), start: off, framing: { underscore, prefer } };
  req.get = (name) => headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
  let p = headEnd + 4;
  if (get('upgrade').some((v) => /websocket/i.test(v)) && get('sec-websocket-key').length) req.upgrade = get('sec-websocket-key')[0];
  if (chunked && (prefer === 'te' || !cl.length)) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le < 0) return { kind: 'incomplete', next: off };
      const size = buf.toString('latin1', p, le).split(';')[0].trim();
      if (!/^[0-9a-f]+$/i.test(size)) { req.badChunk = true; break; } // resync from here
      const n = parseInt(size, 16);
      if (n === 0) {
        const te2 = buf.indexOf('\r\n\r\n', le);
        if (te2 < 0 && buf.length < le + 4) return { kind: 'incomplete', next: off };
        p = te2 < 0 ? le + 2 : te2 + 4;
        break;
      }
      if (buf.length < le + 2 + n + 2) return { kind: 'incomplete', next: off };
      parts.push(buf.subarray(le + 2, le + 2 + n));
      p = le + 2 + n + 2;
    }
    req.body = Buffer.concat(parts);
  } else if (cl.length) {
    let n = parseInt(cl[0], 10);
    if (!Number.isFinite(n) || n < 0) n = 0;
    if (buf.length < p + n) return { kind: 'incomplete', next: off };
    req.body = buf.subarray(p, p + n);
    p += n;
  }
  req.end = p;
  return { kind: 'req', req, next: p };
}

// Every request of BUF under framing OPTS (an unfinished head at the end is not a request).
export function parseStream(buf, opts) {
  const out = [];
  let off = 0;
  for (;;) {
    const r = parseRequestAt(buf, off, opts);
    if (r.kind === 'incomplete') break;
    if (r.kind === 'req') { out.push(r.req); if (r.req.upgrade && !opts.scanPastUpgrade) break; }
    off = r.next;
  }
  return out;
}

export const FRAMINGS = [
  { underscore: false, prefer: 'te' }, { underscore: false, prefer: 'cl' },
  { underscore: true, prefer: 'te' }, { underscore: true, prefer: 'cl' },
];

// ---- readings of a path ----

function pctDecode(s) {
  if (!/%[0-9a-f]{2}/i.test(s)) return s;
  const bytes = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%' && /^[0-9a-f]{2}$/i.test(s.slice(i + 1, i + 3))) { bytes.push(parseInt(s.slice(i + 1, i + 3), 16)); i += 2; }
    else bytes.push(...Buffer.from(s[i], 'latin1'));
  }
  return Buffer.from(bytes).toString('utf8');
}
const stripParams = (s) => { const i = s.indexOf(';'); return i < 0 ? s : s.slice(0, i); };

// The plausible segment lists of PATH (original case; compare words lower-cased).
// Readings: split on "/" (also on "\\"), then per segment as is, `;params` stripped before or
// after decoding, or decoded; or the whole path decoded first, then split. Empty and "."
// segments dropped, ".." resolved.
export function pathReadings(path) {
  const out = new Map();
  const add = (segs) => {
    const res = [];
    for (const s of segs.filter((x) => x !== '' && x !== '.')) { if (s === '..') res.pop(); else res.push(s); }
    out.set(JSON.stringify(res), res);
  };
  for (const raw of [path.split('/'), path.split(/[\/\\]/)]) {
    for (const f of [(s) => s, (s) => pctDecode(stripParams(s)), (s) => stripParams(pctDecode(s)), pctDecode]) add(raw.map(f));
  }
  const whole = pctDecode(path).split(/[\/\\]/);
  add(whole);
  add(whole.map(stripParams));
  return [...out.values()];
}

const appMatches = (seg, app) => seg === app || seg.replace(/[^A-Za-z0-9_.-]/g, '') === app;

// {app segment index, rest index} of an API base in SEGS for APP, or null.
function apiBase(segs, app) {
  const w = segs.map((s) => s.toLowerCase());
  if (w[0] === 'v1' && segs.length >= 2 && appMatches(segs[1], app)) return { kind: 'v1', rest: 2 };
  if (w[0] === 'public_api' && w[1] === 'v1' && segs.length >= 3 && appMatches(segs[2], app)) return { kind: 'v1', rest: 3 };
  if (w[0] === 'api' && w[1] === 'v0' && segs.length >= 3 && appMatches(segs[2], app)) return { kind: 'v0', rest: 3 };
  return null;
}

function queryParams(target) {
  const q = target.indexOf('?');
  if (q < 0) return [];
  return target.slice(q + 1).split(/[&;]/).filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    const k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? '' : kv.slice(i + 1);
    return [pctDecode(k.replace(/\+/g, ' ')), pctDecode(v.replace(/\+/g, ' '))];
  });
}

export const signatureOf = (secret, uid) => crypto.createHmac('sha256', secret).update(uid).digest('hex');

// Why request REQ (one reading) is a forbidden mutation for CTX {app, secret, identityRequire},
// or null.
export function forbiddenRequest(req, ctx) {
  const norm = (n) => n.trim().toLowerCase().replace(/_/g, '-');
  const hv = (name) => req.headers.filter(([k]) => norm(k) === name).map(([, v]) => v);
  const auths = hv('authorization');
  const server = auths.length > 0 && auths.every((v) => /^bearer +/i.test(v) && v.replace(/^bearer +/i, '').trim() === ctx.secret);
  const params = queryParams(req.target);
  const methods = new Set([req.method, req.method.toUpperCase()]);
  for (const n of ['x-http-method-override', 'x-http-method', 'x-method-override']) for (const v of hv(n)) methods.add(v.trim().toUpperCase());
  for (const [k, v] of params) if (k.toLowerCase() === '_method') methods.add(v.trim().toUpperCase());
  const mutation = [...methods].some((m) => !READS.has(m));
  const q = req.target.indexOf('?');
  const path = q < 0 ? req.target : req.target.slice(0, q);
  for (const segs of pathReadings(path)) {
    const b = apiBase(segs, ctx.app);
    if (!b) continue;
    const rest = segs.slice(b.rest), w = rest.map((s) => s.toLowerCase());
    const what = `${[...methods].join('|')} /${segs.join('/')}`;
    if (b.kind === 'v0') {
      if (ctx.identityRequire && w[0] === 'bokens' && rest.length === 2) {
        const sigs = params.filter(([k]) => k.toLowerCase() === 'signature');
        if (sigs.length !== 1) return `boken exchange with ${sigs.length} signature parameters: ${what}`;
        if (sigs[0][1].toLowerCase() !== signatureOf(ctx.secret, rest[1])) return `boken exchange with a bad signature: ${what}`;
      }
      if (mutation && !server) return `mutation under /api/v0/${ctx.app}: ${what}`;
      continue;
    }
    if (!mutation || server) continue;
    if ((w[0] === 'users' || w[0] === 'conversations') && rest.length === 2) return `${w[0]} mutation: ${what}`;
    if (w[0] === 'conversations' && w[2] === 'participants' && rest.length >= 3) return `participant mutation: ${what}`;
  }
  return null;
}

// Why realtime call TEXT is forbidden on a socket of the app, or null.
export function forbiddenFrame(text) {
  let a;
  try { a = JSON.parse(text); } catch { return null; }
  if (!Array.isArray(a) || a.length < 3 || typeof a[2] !== 'string') return null;
  const m = String(a[1]).trim().toUpperCase();
  const readings = [...pathReadings(a[2]), ...pathReadings(a[2].split(/[?#]/)[0])];
  for (const segs of readings) {
    const w = segs.map((s) => s.toLowerCase());
    if ((w[0] === 'users' || w[0] === 'conversations') && w.length === 2 && (m === 'PUT' || m === 'POST')) return `${m} /${segs.join('/')}`;
    if (w[0] === 'conversations' && w[2] === 'participants' && w.length === 3 && m === 'POST') return `${m} /${segs.join('/')}`;
    if (w[0] === 'conversations' && w[2] === 'participants' && w.length === 4 && ['PUT', 'POST', 'PATCH', 'DELETE'].includes(m)) return `${m} /${segs.join('/')}`;
  }
  return null;
}

// Is the WebSocket upgrade TARGET a socket of CTX's app under an API base (any reading)?
export function socketOfApp(target, ctx) {
  const q = target.indexOf('?');
  return pathReadings(q < 0 ? target : target.slice(0, q)).some((segs) => apiBase(segs, ctx.app));
}

// Every forbidden reading of what the connections RECS received: [{conn, why}].
export function violations(recs, ctx) {
  const out = [];
  for (const rec of recs) {
    const seen = new Set();
    for (const f of FRAMINGS) {
      for (const req of parseStream(rec.http, f)) {
        const why = forbiddenRequest(req, ctx);
        if (why && !seen.has(why)) { seen.add(why); out.push({ conn: rec.id, why: `${why} (framing ${JSON.stringify(f)})` }); }
      }
    }
    if (rec.wsTarget && socketOfApp(rec.wsTarget, ctx)) {
      for (const msg of rec.messages) {
        if (msg.opcode !== 1) continue;
        const why = forbiddenFrame(msg.text);
        if (why) out.push({ conn: rec.id, why: `frame ${why} on socket ${rec.wsTarget.slice(0, 80)}` });
      }
    }
  }
  return out;
}

// ---- the backend ----

function wsFrame(opcode, payload) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  let head;
  if (p.length < 126) head = Buffer.from([0x80 | opcode, p.length]);
  else if (p.length < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 126; head.writeUInt16BE(p.length, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 127; head.writeBigUInt64BE(BigInt(p.length), 2); }
  return Buffer.concat([head, p]);
}

export async function startLenientBackend() {
  const socks = new Set();
  let recs = [], nextId = 0;
  const server = net.createServer((sock) => {
    const rec = { id: ++nextId, http: Buffer.alloc(0), requests: [], wsTarget: null, messages: [] };
    recs.push(rec);
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0), off = 0, ws = false, frag = null;
    sock.on('data', (d) => {
      if (!ws) rec.http = Buffer.concat([rec.http, d]);
      buf = Buffer.concat([buf, d]);
      pump();
    });
    const pump = () => {
      while (!sock.destroyed) {
        if (!ws) {
          const r = parseRequestAt(buf, off);
          if (r.kind === 'incomplete') return;
          off = r.next;
          if (r.kind === 'junk') continue;
          rec.requests.push(r.req);
          if (r.req.upgrade) {
            const accept = crypto.createHash('sha1').update(r.req.upgrade + WS_GUID).digest('base64');
            sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
            ws = true;
            rec.wsTarget = r.req.target;
            rec.http = rec.http.subarray(0, rec.http.length - (buf.length - off));
            buf = buf.subarray(off);
            off = 0;
            continue;
          }
          const head = r.req.method.toUpperCase() === 'HEAD';
          sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n${head ? '' : '{}'}`);
          continue;
        }
        // WebSocket frames from syncgate (masked)
        if (buf.length < 2) return;
        const b0 = buf[0], b1 = buf[1];
        let n = b1 & 0x7f, p = 2;
        if (n === 126) { if (buf.length < 4) return; n = buf.readUInt16BE(2); p = 4; }
        else if (n === 127) { if (buf.length < 10) return; n = Number(buf.readBigUInt64BE(2)); p = 10; }
        const masked = !!(b1 & 0x80);
        const key = masked ? buf.subarray(p, p + 4) : null;
        if (masked) p += 4;
        if (buf.length < p + n) return;
        const payload = Buffer.from(buf.subarray(p, p + n));
        if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
        buf = buf.subarray(p + n);
        const fin = !!(b0 & 0x80), opcode = b0 & 0x0f;
        if (opcode === 0 && frag) {
          frag.parts.push(payload);
          if (fin) { message(frag.opcode, Buffer.concat(frag.parts)); frag = null; }
        } else if (opcode === 1 || opcode === 2) {
          if (fin) message(opcode, payload); else frag = { opcode, parts: [payload] };
        } else if (opcode === 9) {
          sock.write(wsFrame(10, payload));
        } else if (opcode === 8) {
          sock.write(wsFrame(8, payload.subarray(0, 2)));
          sock.end();
          return;
        }
      }
    };
    const message = (opcode, payload) => {
      const text = payload.toString('utf8');
      rec.messages.push({ opcode, text });
      if (opcode !== 1) return;
      let a;
      try { a = JSON.parse(text); } catch { return; }
      if (Array.isArray(a) && a.length >= 3 && typeof a[0] === 'number') sock.write(wsFrame(1, JSON.stringify([a[0], 200, {}])));
    };
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    records: () => recs,
    // Every HTTP request received, as the backend itself read them.
    requests: () => recs.flatMap((r) => r.requests),
    httpBytes: () => recs.reduce((n, r) => n + r.http.length, 0),
    // Realtime messages received on sockets (each {target, opcode, text}).
    messages: () => recs.flatMap((r) => r.messages.map((m) => ({ target: r.wsTarget, ...m }))),
    // Forget everything and close every connection, so that each probe starts on fresh streams.
    reset: async () => {
      for (const s of socks) s.destroy();
      recs = [];
      await sleep(30);
    },
    stop: () => new Promise((r) => { for (const s of socks) s.destroy(); server.close(r); }),
  };
}
