// A listener marked proxy_protocol (behind HAProxy, an AWS NLB, ...) reads the PROXY protocol
// header (v1 text or v2 binary) its load balancer sends first: the client it names is the
// peer in syncgate's logs, in the X-Forwarded-For the backend gets, and in the per-address
// connection cap. A connection without a valid header is closed and nothing is forwarded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, rawExchange, parseResponses, waitFor } from '../lib/harness.mjs';

let be, sg;
before(async () => {
  be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  sg = await startSyncgate(be.port, '[limits]\nmax_connections_per_client = 1\n', { listenFlags: 'proxy_protocol' });
});
after(async () => { await sg.stop(); await be.stop(); });

function v2(ip4, port) {
  const h = Buffer.alloc(28);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(h);
  h[12] = 0x21; h[13] = 0x11; h.writeUInt16BE(12, 14);
  ip4.split('.').forEach((x, i) => { h[16 + i] = Number(x); });
  [127, 0, 0, 1].forEach((x, i) => { h[20 + i] = x; });
  h.writeUInt16BE(port, 24); h.writeUInt16BE(80, 26);
  return h;
}
const xff = async (url) => {
  const e = (await be.log()).filter((x) => x.kind === 'http' && x.url === url).at(-1);
  const i = e.rawHeaders.findIndex((k) => k.toLowerCase() === 'x-forwarded-for');
  return e.rawHeaders[i + 1];
};

test('a v1 header names the client: logs and X-Forwarded-For carry it', async () => {
  await be.clearLog();
  const r = await rawExchange(sg.port, 'PROXY TCP4 203.0.113.5 127.0.0.1 51234 80\r\nGET /bytes/4 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 300 });
  assert.equal(parseResponses(r.data)[0].status, 200);
  assert.equal(await xff('/bytes/4'), '203.0.113.5');
  await waitFor(() => sg.logs().some((l) => l.event === 'access' && l.request === 'GET /bytes/4'));
  assert.equal(sg.logs().find((l) => l.event === 'access' && l.request === 'GET /bytes/4').peer, '203.0.113.5');
});

test('a v2 header (binary) does the same, and its bytes never reach the backend', async () => {
  await be.clearLog();
  const r = await rawExchange(sg.port, Buffer.concat([v2('198.51.100.44', 40000), Buffer.from('GET /bytes/5 HTTP/1.1\r\nHost: a\r\n\r\n')]), { idle: 300 });
  assert.equal(parseResponses(r.data)[0].status, 200);
  assert.equal(await xff('/bytes/5'), '198.51.100.44');
  const raw = (await be.log()).filter((x) => x.kind === 'http' && x.url === '/bytes/5').length;
  assert.equal(raw, 1);
});

test('without a PROXY header the connection is closed and nothing is forwarded', async () => {
  await be.clearLog();
  const r = await rawExchange(sg.port, 'GET /bytes/6 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 500 });
  assert.equal(r.data.length, 0);
  assert.equal((await be.log()).filter((x) => x.kind === 'http').length, 0);
  assert.ok(sg.logs().some((l) => l.event === 'proxy_protocol' && /no PROXY protocol header/.test(l.why)));
});

test('the per-address cap counts the client the header names, not the balancer', async () => {
  const net = await import('node:net');
  const hold = net.connect(sg.port, '127.0.0.1');
  await new Promise((r) => hold.on('connect', r));
  hold.write('PROXY TCP4 192.0.2.1 127.0.0.1 1000 80\r\n');
  await new Promise((r) => setTimeout(r, 100));
  // the same client again: over max_connections_per_client = 1
  const same = await rawExchange(sg.port, 'PROXY TCP4 192.0.2.1 127.0.0.1 1001 80\r\nGET /bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 300 });
  assert.equal(parseResponses(same.data)[0]?.status, 429);
  // another client through the same balancer address: admitted
  const other = await rawExchange(sg.port, 'PROXY TCP4 192.0.2.2 127.0.0.1 1002 80\r\nGET /bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 300 });
  assert.equal(parseResponses(other.data)[0]?.status, 200);
  hold.destroy();
});
