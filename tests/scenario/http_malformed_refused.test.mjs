// A corpus of malformed requests, one per class of RFC 9112 framing error: each gets its 4xx
// with Connection: close, the connection is closed, nothing after it is read as a request,
// and not one byte reaches the backend.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, rawExchange, parseResponses } from '../lib/harness.mjs';

let be, sg;
before(async () => {
  be = await startBackend();
  sg = await startSyncgate(be.port, '[limits]\nrequest_line = 1k\nheader_bytes = 4k\nheader_count = 20\nbody = 64k\n');
});
after(async () => { await sg.stop(); await be.stop(); });

const NEXT = 'GET /bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n';
const cases = [
  ['Transfer-Encoding with Content-Length', 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['two Content-Length headers', 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx', 400],
  ['Content-Length list', 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx', 400],
  ['negative Content-Length', 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400],
  ['Content-Length with junk', 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1a\r\n\r\nx', 400],
  ['Transfer-Encoding gzip, chunked', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 400],
  ['Transfer-Encoding chunked twice', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['Transfer-Encoding identity', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n', 400],
  ['Transfer-Encoding xchunked', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 400],
  ['Transfer-Encoding on HTTP/1.0', 'POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['obs-fold', 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n', 400],
  ['bare LF line ending', 'GET /echo HTTP/1.1\nHost: a\r\n\r\n', 400],
  ['bare CR inside a header', 'GET /echo HTTP/1.1\r\nHost: a\rb\r\n\r\n', 400],
  ['\\r\\n\\rX head ending', 'GET /echo HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n', 400],
  ['whitespace before the colon', 'GET /echo HTTP/1.1\r\nHost : a\r\n\r\n', 400],
  ['empty header name', 'GET /echo HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n', 400],
  ['header name not a token', 'GET /echo HTTP/1.1\r\nHost: a\r\nX(a): b\r\n\r\n', 400],
  ['control byte in a value', 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n', 400],
  ['NUL in the head', 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n', 400],
  ['bad chunk size', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', 400],
  ['chunk data without its CRLF', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n', 400],
  ['bad chunk extension', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n', 400],
  ['over-long chunk extension', `POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=${'x'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`, 400],
  ['fragment in the target', 'GET /echo#frag HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['control byte in the target', 'GET /ec\x7fho HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['non-ASCII byte in the target', 'GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['two Host headers', 'GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
  ['no Host on HTTP/1.1', 'GET /echo HTTP/1.1\r\nX: y\r\n\r\n', 400],
  ['absolute-form target', 'GET http://evil/echo HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['HTTP/2.0 request line', 'GET /echo HTTP/2.0\r\nHost: a\r\n\r\n', 400],
  ['lower-case version', 'GET /echo http/1.1\r\nHost: a\r\n\r\n', 400],
  ['dot segments', 'GET /v1/demo/../demo/users/x HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['encoded slash in an id', 'PUT /v1/demo/users/a%2Fb HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n', 400],
  ['request line too long', `GET /${'a'.repeat(1100)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
  ['request line too long, unfinished', `GET /${'a'.repeat(1100)}`, 414],
  ['head too large', `GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(5000)}\r\n\r\n`, 431],
  ['too many headers', 'GET /echo HTTP/1.1\r\nHost: a\r\n' + Array.from({ length: 25 }, (_, i) => `X-${i}: ${i}\r\n`).join('') + '\r\n', 431],
  ['body over the limit (Content-Length)', `POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${70 * 1024}\r\n\r\n`, 413],
  ['body over the limit (chunked)', 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n' + `10000\r\n${'z'.repeat(65536)}\r\n` + `10\r\n${'z'.repeat(16)}\r\n0\r\n\r\n`, 413],
  ['unsupported Expect', 'GET /echo HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n', 417],
  ['CONNECT', 'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n', 501],
];

for (const [name, req, status] of cases) {
  test(`${name} -> ${status}, closed, nothing forwarded`, async () => {
    await be.clearLog();
    const res = await rawExchange(sg.port, Buffer.from(req + NEXT, 'latin1'), { idle: 1500 });
    const rs = parseResponses(res.data);
    assert.equal(rs.length, 1, `exactly one answer, got: ${res.data.toString('latin1').slice(0, 200)}`);
    assert.equal(rs[0].status, status);
    assert.equal(rs[0].h('connection'), 'close');
    assert.match(rs[0].h('content-type'), /json/);
    assert.ok(JSON.parse(rs[0].body).errorCode);
    assert.ok(res.closed, 'connection closed');
    const raw = await be.rawAll();
    assert.equal(raw.length, 0, `backend received: ${raw.toString('latin1').slice(0, 100)}`);
  });
}

test('refusals are logged with a reason', async () => {
  const lines = sg.logs().filter((l) => l.event === 'bad_request');
  assert.ok(lines.length >= 10);
  assert.ok(lines.every((l) => l.why && l.peer === '127.0.0.1'));
});

test('a client still uploading reads its 413 (lingering close, no RST)', async () => {
  const body = Buffer.alloc(3 * 1024 * 1024, 0x61);
  const req = Buffer.concat([Buffer.from(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
  for (let i = 0; i < 5; i++) {
    const res = await rawExchange(sg.port, req, { idle: 3000 });
    const rs = parseResponses(res.data);
    assert.equal(rs.length, 1, 'the answer arrived');
    assert.equal(rs[0].status, 413);
    assert.ok(res.closed);
  }
});
