// What the backend receives through syncgate, and what the client gets back, are the bytes
// of a direct connection but for the documented header changes: hop-by-hop headers removed,
// X-Forwarded-For / X-Forwarded-Proto / Forwarded added (RFC 9110 §7.6.1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startBackend, startSyncgate, rawExchange, parseResponses, waitFor, holdsSocketFrom, sleep } from '../lib/harness.mjs';

let be, sg;
before(async () => { be = await startBackend(); sg = await startSyncgate(be.port); });
after(async () => { await sg.stop(); await be.stop(); });

const FWD = 'X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nForwarded: for=127.0.0.1;proto=http\r\n';

// The request as syncgate must forward it.
function expectedForward(req) {
  const s = req.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  const lines = s.slice(0, end).split('\r\n').filter((l) => !/^(connection|keep-alive|te|upgrade|proxy-connection):/i.test(l));
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n' + FWD + '\r\n', 'latin1'), req.subarray(end + 4)]);
}

// Response minus what may differ: Date, and the hop-by-hop headers syncgate drops.
function normal(r) {
  return {
    statusLine: r.statusLine,
    headers: r.headers.filter(([k]) => !/^(date|connection|keep-alive)$/i.test(k)),
    body: r.body,
  };
}

async function compare(req) {
  await be.clearLog();
  const direct = await rawExchange(be.port, req, { idle: 400 });
  const directRaw = await be.rawAll();
  await be.clearLog();
  const proxied = await rawExchange(sg.port, req, { idle: 400 });
  const proxiedRaw = await be.rawAll();
  assert.deepEqual(proxiedRaw, expectedForward(directRaw), 'backend bytes');
  const [d] = parseResponses(direct.data), [p] = parseResponses(proxied.data);
  assert.ok(d && p, 'both answered');
  assert.deepEqual(normal(p), normal(d));
  return p;
}

const body = (n) => Buffer.from(Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join(''));

for (const method of ['GET', 'PUT', 'POST', 'PATCH', 'DELETE']) {
  for (const size of [0, 1, 1000, 70000, 3 * 1024 * 1024]) {
    if (method === 'GET' && size > 1000) continue;
    test(`${method} /echo with a ${size} byte JSON body`, async () => {
      const json = size ? Buffer.concat([Buffer.from('{"k":"'), body(Math.max(0, size - 8)), Buffer.from('"}')]) : Buffer.alloc(0);
      const req = Buffer.concat([Buffer.from(`${method} /echo?x=1&y=%20 HTTP/1.1\r\nHost: example.test\r\nX-Mixed-CASE: Value  with  spaces\r\ncontent-type: application/json\r\nContent-Length: ${json.length}\r\nConnection: close\r\n\r\n`), json]);
      const r = await compare(req);
      assert.equal(r.status, 200);
      assert.equal(r.body.length, json.length);
    });
  }
}

test('header names keep their case and order, duplicates included', async () => {
  const req = Buffer.from('GET /echo HTTP/1.1\r\nHost: a\r\nx-b: 1\r\nX-A: 2\r\nx-b: 3\r\nAccept: */*\r\nConnection: keep-alive, X-Drop\r\nX-Drop: gone\r\n\r\n');
  await be.clearLog();
  await rawExchange(sg.port, req, { idle: 300 });
  const raw = (await be.rawAll()).toString('latin1');
  assert.equal(raw, 'GET /echo HTTP/1.1\r\nHost: a\r\nx-b: 1\r\nX-A: 2\r\nx-b: 3\r\nAccept: */*\r\n' + FWD + '\r\n');
});

test('a chunked upload is relayed in its chunked encoding', async () => {
  const req = Buffer.from('POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n');
  const r = await compare(req);
  assert.equal(r.body.toString(), 'hello world!');
});

test('a large chunked upload in many pieces streams through', async () => {
  const pieces = [Buffer.from('POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n')];
  let total = 0;
  for (let i = 0; i < 200; i++) { const c = body(10000 + i); total += c.length; pieces.push(Buffer.concat([Buffer.from(c.length.toString(16) + '\r\n'), c, Buffer.from('\r\n')])); }
  pieces.push(Buffer.from('0\r\n\r\n'));
  const res = await rawExchange(sg.port, pieces, { idle: 1000 });
  const [r] = parseResponses(res.data);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, total);
});

test('large responses, Content-Length and chunked, arrive whole', async () => {
  for (const [p, n] of [['/bytes/5000000', 5000000], ['/chunked/3000000', 3000000]]) {
    const res = await rawExchange(sg.port, `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`, { idle: 500 });
    const [r] = parseResponses(res.data);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, n);
  }
});

test('pipelined requests are answered in order on one connection', async () => {
  const reqs = [];
  for (let i = 0; i < 20; i++) {
    const b = `{"n":${i}}`;
    reqs.push(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${b.length}\r\n\r\n${b}`);
  }
  reqs.push('GET /bytes/10 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const res = await rawExchange(sg.port, reqs.join(''), { idle: 1000 });
  const rs = parseResponses(res.data);
  assert.equal(rs.length, 21);
  for (let i = 0; i < 20; i++) assert.equal(rs[i].body.toString(), `{"n":${i}}`);
  assert.equal(rs[20].body.toString(), 'xxxxxxxxxx');
  assert.equal(rs[20].h('connection'), 'close');
  assert.ok(res.closed, 'closed after Connection: close');
});

test('keep-alive: sequential requests reuse the client connection', async () => {
  const res = await rawExchange(sg.port, ['GET /bytes/3 HTTP/1.1\r\nHost: a\r\n\r\n', 'GET /bytes/4 HTTP/1.1\r\nHost: a\r\n\r\n'], { idle: 400, pause: 100 });
  const rs = parseResponses(res.data);
  assert.deepEqual(rs.map((r) => r.body.toString()), ['xxx', 'xxxx']);
  assert.equal(res.closed, false);
});

test('clients that close after each request (Connection: close) share one kept-alive backend connection', async () => {
  await be.clearLog();
  for (let i = 0; i < 20; i++) {
    const res = await rawExchange(sg.port, 'GET /bytes/2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', { idle: 2000 });
    const [r] = parseResponses(res.data);
    assert.equal(r.body.toString(), 'xx');
    assert.ok(res.closed, 'the client connection is closed');
    assert.equal(r.headers.find(([k]) => k.toLowerCase() === 'connection')?.[1], 'close');
  }
  const reqs = (await be.log()).filter((e) => e.kind === 'http');
  assert.equal(reqs.length, 20);
  assert.ok(!reqs.some((e) => e.rawHeaders.some((h) => /^close$/i.test(h))), 'the client\'s Connection: close is not forwarded');
  assert.equal(new Set(reqs.map((e) => e.socket)).size, 1, 'one backend connection served all twenty');
});

// After a Connection: close answer syncgate stops writing (FIN). It keeps reading for a while
// (the lingering close) only if the client may still be sending, as nginx does: closing on
// unread input would make the kernel answer with RST, which can destroy the answer.
async function closeExchange(payload) {
  // allowHalfOpen: our side stays open after syncgate's FIN (Node would end it at once)
  const sock = net.connect({ port: sg.port, host: '127.0.0.1', allowHalfOpen: true });
  let data = Buffer.alloc(0), ended = false;
  sock.on('data', (d) => { data = Buffer.concat([data, d]); });
  sock.on('end', () => { ended = true; }); // FIN from syncgate; our side stays open
  sock.on('error', () => {});
  await new Promise((r) => sock.on('connect', r));
  sock.write(payload);
  await waitFor(() => ended, { timeout: 3000 });
  return { sock, data };
}

test('a complete Connection: close request: the socket is released at once, even while the client keeps its side open', async () => {
  const { sock, data } = await closeExchange('GET /bytes/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const port = sock.localPort;
  assert.equal(parseResponses(data)[0].body.toString(), 'xxx');
  // the lingering close would hold it 2 s
  await waitFor(() => !holdsSocketFrom(sg.proc.pid, port), { timeout: 1000 });
  sock.destroy();
});

test('bytes after a Connection: close request: syncgate lingers, reading them, instead of resetting', async () => {
  const { sock, data } = await closeExchange('GET /bytes/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /bytes/4 HTTP/1.1\r\nHost: a\r\n\r\n');
  const port = sock.localPort;
  const rs = parseResponses(data);
  assert.equal(rs.length, 1, 'one answer: nothing after Connection: close is a request');
  await sleep(300);
  assert.ok(holdsSocketFrom(sg.proc.pid, port), 'the client socket is kept, reading and discarding');
  sock.write('more bytes from a client that is not listening'); // read and dropped, no RST
  await sleep(100);
  assert.ok(!sock.destroyed);
  sock.destroy();
  await waitFor(() => !holdsSocketFrom(sg.proc.pid, port), { timeout: 3000 });
});

test('Expect: 100-continue is answered by syncgate and not forwarded', async () => {
  await be.clearLog();
  const res = await rawExchange(sg.port, ['POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n', 'ok'], { idle: 400, pause: 150 });
  const rs = parseResponses(res.data);
  assert.equal(rs[0].status, 100);
  assert.equal(rs[1].status, 200);
  assert.equal(rs[1].body.toString(), 'ok');
  const raw = (await be.rawAll()).toString();
  assert.ok(!/expect/i.test(raw), 'Expect not forwarded');
});

test('HEAD gets the headers and no body', async () => {
  const res = await rawExchange(sg.port, 'HEAD /bytes/100 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 400 });
  const s = res.data.toString();
  assert.match(s, /^HTTP\/1.1 200 OK\r\n/);
  assert.match(s, /Content-Length: 100\r\n/);
  assert.ok(s.endsWith('\r\n\r\nxx'), 'the next response follows the HEAD answer directly');
});
