// Who the client is: a client's own X-Forwarded-For, Forwarded and X-Real-IP are replaced by
// syncgate's (never appended to, so a backend reading the first entry cannot be fooled), unless
// the peer is one of [syncgate] trusted_proxies (a load balancer in front): then its headers
// are kept, syncgate's entry follows, and the client address in syncgate's logs is the
// rightmost entry that is not itself a trusted proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { SYNCGATE, startBackend, startSyncgate, rawExchange, parseResponses, waitFor } from '../lib/harness.mjs';
import { userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo';
const APP = `[app:demo]\nuser_sync = off\nsecret_key = ${KEY}\n`;
let be, open, behind;
before(async () => {
  be = await startBackend({ apps: { demo: KEY } });
  open = await startSyncgate(be.port, APP);
  behind = await startSyncgate(be.port, `trusted_proxies = 127.0.0.1, 10.0.0.0/8\n${APP}`);
});
after(async () => { await open.stop(); await behind.stop(); await be.stop(); });

const FORGED = 'X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n';
// The headers the backend got for the last request to PATH, as [name, value] pairs.
async function seen(pathname) {
  const e = (await be.log()).filter((x) => x.kind === 'http' && x.url === pathname).at(-1);
  const h = [];
  for (let i = 0; i < e.rawHeaders.length; i += 2) h.push([e.rawHeaders[i].toLowerCase(), e.rawHeaders[i + 1]]);
  return h;
}
const values = (h, n) => h.filter(([k]) => k === n).map(([, v]) => v);

test('a client that is not a trusted proxy cannot forge its address: its forwarding headers are replaced', async () => {
  await be.clearLog();
  const r = await rawExchange(open.port, `GET /bytes/1 HTTP/1.1\r\nHost: a\r\n${FORGED}\r\n`, { idle: 300 });
  assert.equal(parseResponses(r.data)[0].status, 200);
  const h = await seen('/bytes/1');
  assert.deepEqual(values(h, 'x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(values(h, 'forwarded'), ['for=127.0.0.1;proto=http']);
  assert.deepEqual(values(h, 'x-real-ip'), []);
});

test('behind a trusted proxy: its X-Forwarded-For is kept with syncgate\'s entry after it, and names the client in the logs', async () => {
  await be.clearLog();
  const r = await rawExchange(behind.port, 'GET /bytes/2 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.1.2.3\r\n\r\n', { idle: 300 });
  assert.equal(parseResponses(r.data)[0].status, 200);
  const h = await seen('/bytes/2');
  assert.deepEqual(values(h, 'x-forwarded-for'), ['198.51.100.1, 203.0.113.9, 10.1.2.3', '127.0.0.1']);
  // 10.1.2.3 is a trusted proxy too: the client is the rightmost entry before the trusted ones
  await waitFor(() => behind.logs().some((l) => l.event === 'access' && l.request === 'GET /bytes/2'));
  assert.equal(behind.logs().find((l) => l.event === 'access' && l.request === 'GET /bytes/2').peer, '203.0.113.9');
  // a refusal's decision line names the same client
  const put = await rawExchange(behind.port, `PUT /v1/demo/users/alice HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.77\r\nAuthorization: Bearer ${userToken('demo', 'alice', KEY)}\r\nContent-Length: 0\r\n\r\n`, { idle: 300 });
  assert.equal(parseResponses(put.data)[0].status, 403);
  assert.ok(behind.logs().some((l) => l.event === 'refuse' && l.peer === '203.0.113.77'), 'the decision line names the client');
});

test('behind a trusted proxy, an entry that is not an address leaves the peer\'s', async () => {
  await rawExchange(behind.port, 'GET /bytes/3 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: unknown\r\n\r\n', { idle: 300 });
  await waitFor(() => behind.logs().some((l) => l.event === 'access' && l.request === 'GET /bytes/3'));
  assert.equal(behind.logs().find((l) => l.event === 'access' && l.request === 'GET /bytes/3').peer, '127.0.0.1');
});

test('a bad trusted_proxies entry is a config error naming its line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-tp-'));
  const file = path.join(dir, 'bad.conf');
  for (const bad of ['10.0.0.0/33', 'example.com', '::1/129', '10.0.0.0/']) {
    fs.writeFileSync(file, `[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\ntrusted_proxies = 127.0.0.1, ${bad}\n`);
    const r = spawnSync(SYNCGATE, ['-t', '-c', file], { encoding: 'utf8' });
    assert.equal(r.status, 1, bad);
    assert.match(r.stderr, new RegExp(`bad\\.conf:4: trusted_proxies: '${bad.replace(/[./]/g, '\\$&')}' is not an address`), r.stderr);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
