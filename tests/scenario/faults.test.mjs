// Backend and client faults. Each ends in its documented status or close, with no crash
// (a sanitizer report fails the run in the ASan build) and no leaked descriptor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { startBackend, startSyncgate, rawExchange, parseResponses, freePort, sleep, openFds, waitFor } from '../lib/harness.mjs';
import { RawWs, frame, userToken } from '../lib/rawws.mjs';

// A scripted backend: SCRIPT(socket, bytesSoFar) decides what it does with each request.
async function scripted(script) {
  const port = await freePort();
  const srv = net.createServer((s) => { let got = ''; s.on('data', (d) => { got += d.toString('latin1'); script(s, got); }); s.on('error', () => {}); });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  return { port, close: () => new Promise((r) => srv.close(r)) };
}

async function withSyncgate(backendPort, conf, f) {
  const sg = await startSyncgate(backendPort, conf);
  const fds0 = openFds(sg.proc.pid);
  try {
    await f(sg);
    await sleep(300);
    const fds1 = openFds(sg.proc.pid);
    assert.ok(fds1 <= fds0 + 1, `descriptors: ${fds0} before, ${fds1} after`);
  } finally {
    await sg.stop();
  }
}

test('backend resets in the middle of a Content-Length body: the client gets the part and a close', async () => {
  const be = await scripted((s, got) => { if (got.includes('\r\n\r\n')) { s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + 'a'.repeat(300)); setTimeout(() => s.resetAndDestroy(), 50); } });
  await withSyncgate(be.port, '', async (sg) => {
    const res = await rawExchange(sg.port, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 2000 });
    assert.ok(res.closed);
    assert.match(res.data.toString(), /^HTTP\/1.1 200 OK\r\n/);
    assert.ok(res.data.length < 1000 + 40, 'truncated, never padded');
  });
  await be.close();
});

test('backend resets in the middle of a chunked body: the client is closed', async () => {
  const be = await scripted((s, got) => { if (got.includes('\r\n\r\n')) { s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo'); setTimeout(() => s.resetAndDestroy(), 50); } });
  await withSyncgate(be.port, '', async (sg) => {
    const res = await rawExchange(sg.port, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 2000 });
    assert.ok(res.closed);
    assert.ok(!res.data.toString().includes('0\r\n\r\n'), 'no terminating chunk was invented');
  });
  await be.close();
});

test('backend stalls in the body: the client is closed at upstream_response', async () => {
  const be = await scripted((s, got) => { if (got.includes('\r\n\r\n')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'); });
  await withSyncgate(be.port, '[limits]\nupstream_response = 400ms\n', async (sg) => {
    const t0 = Date.now();
    const res = await rawExchange(sg.port, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 3000 });
    assert.ok(res.closed);
    assert.ok(Date.now() - t0 < 2500);
  });
  await be.close();
});

test('backend sends a bad chunk size: the client is closed, nothing invented', async () => {
  const be = await scripted((s, got) => { if (got.includes('\r\n\r\n')) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'); });
  await withSyncgate(be.port, '', async (sg) => {
    const res = await rawExchange(sg.port, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 2000 });
    assert.ok(res.closed);
    assert.ok(!res.data.toString().includes('hello'));
  });
  await be.close();
});

test('backend answers an upgrade with 101 but a wrong accept key: 502, no tunnel', async () => {
  const be = await scripted((s, got) => { if (got.includes('\r\n\r\n')) s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n'); });
  await withSyncgate(be.port, '', async (sg) => {
    const res = await rawExchange(sg.port, 'GET /v1/demo/realtime/alice HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', { idle: 1500 });
    assert.equal(parseResponses(res.data)[0].status, 502);
    assert.ok(res.closed);
  });
  await be.close();
});

test('backend dies in the middle of a WebSocket message: the client gets close 1001', async () => {
  const be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  await withSyncgate(be.port, '[app:demo]\nsecret_key = sk_test_demo\n', async (sg) => {
    const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'alice', 'sk_test_demo') }, {}]));
    await ws.json(0);
    ws.send(frame(1, '[1,"GET","/ping",', { fin: false })); // the client is mid-message too
    await be.stop();
    const c = await ws.closeFrame(3000);
    assert.equal(c.code, 1001);
    assert.ok(await ws.waitClosed());
  });
});

test('clients disconnecting mid-upload and mid-fragment leave nothing behind', async () => {
  const be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  await withSyncgate(be.port, '[app:demo]\nsecret_key = sk_test_demo\n', async (sg) => {
    for (let i = 0; i < 20; i++) {
      const s = net.connect(sg.port, '127.0.0.1');
      await new Promise((r) => s.on('connect', r));
      s.write(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n${'u'.repeat(200000)}`);
      await sleep(20);
      s.resetAndDestroy();
      const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
      ws.send(frame(1, '[1,"GET"', { fin: false }));
      await sleep(10);
      ws.destroy();
    }
    const res = await rawExchange(sg.port, 'GET /bytes/3 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 300 });
    assert.equal(parseResponses(res.data)[0].status, 200, 'still serving');
  });
  await be.stop();
});

test('SIGTERM under load: in-flight requests complete, the process exits 0', async () => {
  const be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  const sg = await startSyncgate(be.port, 'workers = 2\n');
  const wrk = spawn('wrk', ['-t2', '-c20', '-d4s', '--timeout', '10s', `http://127.0.0.1:${sg.port}/bytes/100`]);
  let out = '';
  wrk.stdout.on('data', (d) => { out += d; });
  await sleep(1500);
  const code = await sg.stop('SIGTERM');
  assert.equal(code, 0);
  await new Promise((r) => wrk.on('exit', r));
  assert.match(out, /requests in/);
  assert.ok(!/Non-2xx/.test(out), out); // connections are closed, but nothing half-answered
  await be.stop();
});
