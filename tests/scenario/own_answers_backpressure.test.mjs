// A client that sends and never reads must not grow syncgate's memory: syncgate's own answers
// (HTTP refusals, realtime refusals) and the backend's answers to allowed calls are under the
// same watermarks as relayed bytes. While the client does not read, syncgate stops reading it;
// other clients are served meanwhile; once the client reads, every call it sent is answered,
// in order. (Issue 15, part 2: before, 40 MB of refused calls grew RSS by 146 MB over HTTP and
// 790 MB over the realtime socket.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { startBackend, startSyncgate, freePort, sleep, waitFor, parseResponses } from '../lib/harness.mjs';
import { frame, userToken } from '../lib/rawws.mjs';

// bytes of calls the client writes without reading (FLOOD_MB=40 reproduces the figure)
const FLOOD = Number(process.env.FLOOD_MB || 20) * 1024 * 1024;
const RSS_BUDGET = 16 * 1024 * 1024;
const conf = `[app:tApp]\nuser_sync = off\nconversation_sync = off\nsecret_key = sk_test_tApp\n`;

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
// Under ASan freed memory sits in a quarantine, so RSS says nothing of what is live there.
const asan = (pid) => fs.readFileSync(`/proc/${pid}/maps`, 'utf8').includes('libasan');

let be, sg, fast, token;

// A backend that answers at once: every HTTP request "200 {}" (keep-alive, heads only), every
// realtime call [seq,200,{}]. The reference backend answers pipelined requests ~40 ms apart.
// A lookup of user "stuck" is never answered. It stops reading while its own writes wait, so a client that does not read stalls the
// whole chain; what must stay flat is syncgate's memory in the middle of it.
async function startFastBackend() {
  const port = await freePort();
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0), ws = false;
    s.on('error', () => {});
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const out = [];
      for (;;) {
        if (!ws) {
          const e = buf.indexOf('\r\n\r\n');
          if (e < 0) break;
          const head = buf.subarray(0, e).toString('latin1');
          buf = buf.subarray(e + 4);
          const key = /sec-websocket-key:\s*(\S+)/i.exec(head);
          if (key) {
            const accept = crypto.createHash('sha1').update(key[1] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
            out.push(Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`));
            ws = true;
          } else if (!/^GET \S*\/users\/stuck /.test(head)) { // that lookup is never answered
            out.push(Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'));
          }
          continue;
        }
        if (buf.length < 2) break;
        let n = buf[1] & 0x7f, off = 2;
        if (n === 126) { if (buf.length < 4) break; n = buf.readUInt16BE(2); off = 4; }
        else if (n === 127) { if (buf.length < 10) break; n = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + 4 + n) break;
        const mask = buf.subarray(off, off + 4), p = Buffer.from(buf.subarray(off + 4, off + 4 + n));
        for (let i = 0; i < n; i++) p[i] ^= mask[i & 3];
        buf = buf.subarray(off + 4 + n);
        const seq = /^\[(\d+)/.exec(p.toString());
        if (seq) out.push(frame(1, `[${seq[1]},200,{}]`, { mask: false }));
      }
      // a backend that stops reading while its answers are not taken, as a server should
      if (out.length && !s.write(Buffer.concat(out))) { s.pause(); s.once('drain', () => s.resume()); }
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { port, close: () => new Promise((r) => { server.close(r); for (const c of server._conns || []) c.destroy(); }) };
}

before(async () => {
  be = await startBackend({ apps: { tApp: 'sk_test_tApp' } });
  sg = await startSyncgate(be.port, conf);
  fast = await startFastBackend();
  token = userToken('tApp', 'alice', 'sk_test_tApp');
});
after(async () => {
  await sg.stop();
  await be.stop();
  await fast.close();
});

// Connects, writes CHUNKS (Buffers) without reading (the socket is paused: the kernel's
// buffers fill and syncgate's writes block), and gives back controls for the test.
async function floodingClient(port, head, chunks) {
  const s = net.connect(port, '127.0.0.1');
  await new Promise((r) => s.on('connect', r));
  s.pause();
  const got = [];
  s.on('data', (d) => got.push(d));
  // a reset after the test is done with the socket (its own destroy() racing the last
  // writes) is no finding: what a test needs of the socket it asserts on its bytes
  s.on('error', () => {});
  let written = 0, handed = 0, stop = false;
  const writing = (async () => {
    if (head) s.write(head);
    for (const c of chunks) {
      if (stop) break;
      handed++; // node sends every chunk it was handed, however long it takes
      if (!s.write(c)) await new Promise((r) => { s.once('drain', r); s.once('close', r); });
      written += c.length;
    }
  })();
  return {
    s, got, writing,
    written: () => written,
    handed: () => handed,
    read: () => s.resume(),
    stop: () => { stop = true; },
    bytes: () => Buffer.concat(got),
  };
}

// FLOOD bytes of realtime calls CALL(seq), seq from 1, in chunks of 1000 masked frames.
function realtimeFlood(call) {
  const chunks = [];
  let seq = 1, size = 0;
  while (size < FLOOD) {
    const parts = [];
    for (let i = 0; i < 1000; i++) parts.push(frame(1, call(seq++)));
    const b = Buffer.concat(parts);
    chunks.push(b);
    size += b.length;
  }
  return chunks;
}

// Waits until syncgate stops taking the flood (the client's writes block), then checks RSS.
// STALLS: the flood must stop short of its end. Not for small answers to allowed realtime
// calls: kernel socket buffers along client, syncgate and backend can hold all of it.
async function assertBounded(pid, rss0, client, what, stalls = true) {
  let last = -1;
  await waitFor(async () => {
    const w = client.written();
    const still = w === last;
    last = w;
    await sleep(300);
    return still && client.written() === w;
  }, { timeout: 20000, every: 0 });
  if (stalls) assert.ok(client.written() < FLOOD, `${what}: syncgate kept reading a client that reads nothing (${client.written()} of ${FLOOD} bytes taken)`);
  const grew = rss(pid) - rss0;
  if (!asan(pid)) assert.ok(grew < RSS_BUDGET, `${what}: RSS grew by ${(grew / 1048576).toFixed(1)} MB while the client did not read`);
  return grew;
}

// Another client, during the flood: served normally.
async function otherClientServed(port) {
  const r = await fetch(`http://127.0.0.1:${port}/api/v0/tApp`, { signal: AbortSignal.timeout(3000) });
  assert.equal(r.status, 200);
}

// Floods SG through a client that does not read: syncgate must stop taking the flood with its
// RSS flat, and serve another client meanwhile. Then the client stops writing and reads.
async function floodThenRead(sg, head, chunks, what, stalls = true) {
  const rss0 = rss(sg.proc.pid);
  const c = await floodingClient(sg.port, head, chunks);
  const grew = await assertBounded(sg.proc.pid, rss0, c, what, stalls);
  console.log(`${what}: ${(c.written() / 1048576).toFixed(1)} MB taken before syncgate stopped reading; RSS +${(grew / 1048576).toFixed(1)} MB`);
  await otherClientServed(sg.port);
  c.stop();
  c.read();
  return c;
}

test('HTTP: pipelined refused requests from a client that does not read leave memory flat, and are all answered in order once it reads', async () => {
  const reqs = [
    Buffer.from(`PUT /v1/tApp/users/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\n\r\n`),
    Buffer.from(`PUT /v1/tApp/conversations/c1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\n\r\n`),
    Buffer.from(`DELETE /v1/tApp/conversations/c1/participants/bob HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\n\r\n`),
  ];
  const want = ['USER_SYNC_DISABLED', 'UNAUTHORIZED_TO_EDIT', 'UNAUTHORIZED_TO_EDIT_PARTICIPANT'];
  const round = Buffer.concat(reqs), perChunk = Math.floor(65536 / round.length);
  const chunk = Buffer.concat(Array(perChunk).fill(round));
  const chunks = Array(Math.ceil(FLOOD / chunk.length)).fill(chunk);
  const c = await floodThenRead(sg, null, chunks, 'HTTP refusals');
  const n = c.handed() * perChunk * 3;
  await waitFor(() => {
    const b = c.bytes();
    return (b.length && (b.toString('latin1').match(/HTTP\/1\.1 /g) || []).length >= n);
  }, { timeout: 60000, every: 100 });
  const res = parseResponses(c.bytes());
  assert.equal(res.length, n, 'every request sent is answered');
  for (let i = 0; i < res.length; i++) {
    assert.equal(res[i].status, 403, `answer ${i}`);
    assert.equal(JSON.parse(res[i].body).errorCode, want[i % 3], `answer ${i} in order`);
  }
  c.s.destroy();
});

test('realtime: refused calls from a client that does not read leave memory flat, and are all answered in order once it reads', async () => {
  const key = crypto.randomBytes(16).toString('base64');
  const head = `GET /v1/tApp/realtime/alice HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`;
  const chunks = realtimeFlood((seq) => `[${seq},"PUT","/users/u2",{"name":"x"},{}]`);
  const c = await floodThenRead(sg, head, chunks, 'realtime refusals');
  // the seq of the last call written: every call up to it must be answered, in order
  const lastSeq = c.handed() * 1000;
  const seqs = [];
  await waitFor(() => {
    const b = c.bytes();
    const at = b.indexOf('\r\n\r\n');
    if (at < 0) return false;
    seqs.length = 0;
    let off = at + 4;
    while (off + 2 <= b.length) {
      let n = b[off + 1] & 0x7f, h = 2;
      if (n === 126) { if (off + 4 > b.length) break; n = b.readUInt16BE(off + 2); h = 4; }
      if (off + h + n > b.length) break;
      const m = /^\[(\d+),403,\{"errorCode":"USER_SYNC_DISABLED"/.exec(b.subarray(off + h, off + h + n).toString());
      seqs.push(m ? Number(m[1]) : -1);
      off += h + n;
    }
    return seqs.length >= lastSeq;
  }, { timeout: 60000, every: 100 });
  for (let i = 0; i < lastSeq; i++) assert.equal(seqs[i], i + 1, `answer ${i} is the refusal of call ${i + 1}, in order`);
  c.s.destroy();
});

test('allowed calls answered by the backend: a client that does not read stalls its own relay, not syncgate\'s memory', async () => {
  const sg2 = await startSyncgate(fast.port, conf);
  try {
    // HTTP: pipelined allowed reads, each answered by the backend
    const req = Buffer.from(`GET /v1/tApp/users/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    const chunk = Buffer.concat(Array(Math.floor(65536 / req.length)).fill(req));
    const c = await floodThenRead(sg2, null, Array(Math.ceil(FLOOD / chunk.length)).fill(chunk), 'HTTP allowed');
    const n = c.handed() * Math.floor(65536 / req.length);
    await waitFor(() => (c.bytes().toString('latin1').match(/HTTP\/1\.1 200/g) || []).length >= n, { timeout: 60000, every: 100 });
    c.s.destroy();

    // realtime: allowed calls, each answered by the backend, every answer reaching the client
    const key = crypto.randomBytes(16).toString('base64');
    const head = `GET /v1/tApp/realtime/alice HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`;
    const w = await floodThenRead(sg2, head, realtimeFlood((seq) => `[${seq},"GET","/users",{"ids":["a"]},{}]`), 'realtime allowed', false);
    const answers = w.handed() * 1000;
    await waitFor(() => (w.bytes().toString('latin1').match(/,200,\{\}\]/g) || []).length >= answers, { timeout: 60000, every: 100 });
    w.s.destroy();
  } finally {
    await sg2.stop();
  }
});

test('calls waiting for a fact the backend does not give: at most 64 per socket, then the client is not read', async () => {
  const sg3 = await startSyncgate(fast.port, conf);
  try {
    const key = crypto.randomBytes(16).toString('base64');
    const head = `GET /v1/tApp/realtime/alice HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`;
    // createIfNotExists of one user: every call parks on the same lookup, which never ends
    // before lookup_timeout (then each fails closed, 403, and the next 64 are read)
    const w = await floodThenRead(sg3, head, realtimeFlood((seq) => `[${seq},"POST","/users/stuck",{"name":"x"},{}]`), 'parked calls');
    await waitFor(() => /,403,\{"errorCode":"USER_SYNC_DISABLED"/.test(w.bytes().toString('latin1')), { timeout: 10000, every: 100 });
    w.s.destroy();
  } finally {
    await sg3.stop();
  }
});
