// Resource limits under attack: each attack is cut off by its documented limit while other
// clients keep being served, and syncgate's resident memory stays within a budget per
// connection (the figures are printed for the issue notes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { startBackend, startSyncgate, rawExchange, parseResponses, sleep, waitFor } from '../lib/harness.mjs';
import { RawWs, frame, userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo';
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
let be;
before(async () => { be = await startBackend({ apps: { demo: KEY } }); });
after(async () => { await be.stop(); });

async function served(port) {
  const res = await rawExchange(port, 'GET /bytes/2 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 300 });
  return parseResponses(res.data)[0]?.status === 200;
}

test('5,000 idle connections: memory per connection within 16 KiB, others still served', async () => {
  const sg = await startSyncgate(be.port, '[limits]\nmax_connections_per_client = 0\n');
  try {
    const before0 = rssKiB(sg.proc.pid);
    const socks = [];
    for (let i = 0; i < 5000; i++) {
      const s = net.connect(sg.port, '127.0.0.1');
      s.on('error', () => {});
      socks.push(s);
      if (i % 500 === 499) await sleep(50);
    }
    await waitFor(() => socks.every((s) => !s.connecting), { timeout: 20000 });
    await sleep(500);
    const per = ((rssKiB(sg.proc.pid) - before0) * 1024) / 5000;
    console.log(`idle HTTP connections: ${per.toFixed(0)} bytes of RSS each`);
    assert.ok(per < 16384, `${per} bytes per idle connection`);
    assert.ok(await served(sg.port));
    socks.forEach((s) => s.destroy());
  } finally {
    await sg.stop();
  }
});

test('max_connections_per_client: past it, 429 and close; other addresses unaffected', async () => {
  const sg = await startSyncgate(be.port, '[limits]\nmax_connections_per_client = 10\n');
  try {
    await sleep(500); // the harness's own port probe (also from 127.0.0.1) must be closed first
    const socks = [];
    for (let i = 0; i < 10; i++) { const s = net.connect(sg.port, '127.0.0.1'); s.on('error', () => {}); socks.push(s); await new Promise((r) => s.on('connect', r)); }
    await sleep(100);
    const res = await rawExchange(sg.port, 'GET /bytes/2 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 1000 });
    const r = parseResponses(res.data)[0];
    assert.equal(r.status, 429);
    assert.equal(JSON.parse(r.body).errorCode, 'TOO_MANY_CONNECTIONS');
    assert.ok(res.closed);
    socks.forEach((s) => s.destroy());
    await sleep(200);
    assert.ok(await served(sg.port), 'the address is served again once it is under the cap');
  } finally {
    await sg.stop();
  }
});

test('max_connections: past it accepting pauses; it resumes when connections close', async () => {
  const sg = await startSyncgate(be.port, '[limits]\nmax_connections = 5\nmax_connections_per_client = 0\n');
  try {
    const socks = [];
    for (let i = 0; i < 5; i++) { const s = net.connect(sg.port, '127.0.0.1'); s.on('error', () => {}); socks.push(s); await new Promise((r) => s.on('connect', r)); }
    await sleep(100);
    const pending = rawExchange(sg.port, 'GET /bytes/2 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 3000 });
    await sleep(500);
    assert.ok(sg.logs().some((l) => l.event === 'max_connections'));
    socks.forEach((s) => s.destroy());
    const res = await pending;
    assert.equal(parseResponses(res.data)[0].status, 200, 'queued in the backlog, then served');
  } finally {
    await sg.stop();
  }
});

test('a 1-byte-fragment flood is cut off at ws_fragments; others are served meanwhile', async () => {
  const sg = await startSyncgate(be.port, `[app:demo]\nsecret_key = ${KEY}\n[limits]\nws_fragments = 1000\n`);
  try {
    const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
    ws.send(frame(1, '[', { fin: false }));
    const chunk = Buffer.concat(Array.from({ length: 200 }, () => frame(0, ' ', { fin: false })));
    for (let i = 0; i < 10 && !ws.closed; i++) { ws.send(chunk); await sleep(5); }
    const c = await ws.closeFrame();
    assert.equal(c.code, 1009);
    assert.ok(await served(sg.port));
  } finally {
    await sg.stop();
  }
});

test('a ping flood from a client that never reads: syncgate memory stays flat', async () => {
  // (under ASan, freed memory sits in a quarantine: keep it small so RSS means something)
  const sg = await startSyncgate(be.port, `[app:demo]\nsecret_key = ${KEY}\n`, { env: { ASAN_OPTIONS: 'detect_leaks=1:quarantine_size_mb=4' } });
  try {
    const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
    ws.sock.pause(); // never reads again
    const before0 = rssKiB(sg.proc.pid);
    const pings = Buffer.concat(Array.from({ length: 1000 }, () => frame(9, 'p'.repeat(125))));
    const samples = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 100; i++) { ws.sock.write(pings); if (i % 20 === 0) await sleep(10); }
      await sleep(700);
      samples.push(rssKiB(sg.proc.pid) - before0);
    }
    console.log(`ping flood (50 MB of pings, client not reading): syncgate RSS +${samples.join(', +')} KiB after each 12.5 MB`);
    assert.ok(samples[3] - samples[1] < 4096, `still growing: ${samples}`);
    assert.ok(await served(sg.port), 'others still served');
    ws.destroy();
  } finally {
    await sg.stop();
  }
});

test('a backend that stops reading: syncgate stops reading the client at its watermark, memory stays flat', async () => {
  // a scripted backend: accepts the realtime upgrade, then never reads that socket again;
  // plain requests get a small answer (so the "others still served" check can pass)
  const port = await new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
  const stalled = [];
  const srv = net.createServer((s) => {
    let head = '';
    s.on('error', () => {});
    s.on('data', (d) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const key = /Sec-WebSocket-Key: (.*)\r\n/i.exec(head);
      if (key) {
        const acc = crypto.createHash('sha1').update(key[1] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acc}\r\n\r\n`);
        s.pause(); // never reads again
        s.removeAllListeners('data');
        stalled.push(s);
        return;
      }
      head = '';
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nxx');
    });
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  const sg = await startSyncgate(port, `[app:demo]\nsecret_key = ${KEY}\n`, { env: { ASAN_OPTIONS: 'detect_leaks=1:quarantine_size_mb=4' } });
  try {
    const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
    const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => frame(1, `[${i},"GET","/ping",{},{}]`)));
    const before0 = rssKiB(sg.proc.pid);
    const samples = [];
    let sent = 0;
    // write until the client's own buffer backs up (syncgate, then every kernel buffer on the
    // way, stopped taking bytes), at most 64 MB
    for (let round = 0; round < 4; round++) {
      while (ws.sock.writableLength < (round + 1) * 512 * 1024 && sent < 64 * 1024 * 1024) {
        ws.sock.write(batch);
        sent += batch.length;
        await sleep(1);
      }
      await sleep(300);
      samples.push(rssKiB(sg.proc.pid) - before0);
    }
    console.log(`client flood into a stalled backend: ${(sent / 1048576).toFixed(1)} MB written, the client's own buffer backed up to ${ws.sock.writableLength} bytes; syncgate RSS +${samples.join(', +')} KiB`);
    assert.ok(ws.sock.writableLength >= 1024 * 1024, 'syncgate stopped reading the client: its writes back up');
    assert.ok(samples[3] < 16 * 1024, `syncgate holds no more than its watermarks: ${samples}`);
    assert.ok(samples[3] - samples[1] < 2048, `still growing: ${samples}`);
    assert.ok(await served(sg.port), 'others still served');
    ws.destroy();
  } finally {
    await sg.stop();
    stalled.forEach((s) => s.destroy());
    await new Promise((r) => srv.close(r));
  }
});
