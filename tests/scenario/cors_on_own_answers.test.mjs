// syncgate's own answers (refusals, errors) carry the CORS origin policy of [syncgate]
// cors_origins, so that a browser page on another origin can read the reason instead of a
// CORS failure: by default the request's Origin is named (the answer holds nothing but the
// reason), a list names only its origins, "*" is "*", off names none. Answers the backend
// gives pass unchanged, its own CORS headers included.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { SYNCGATE, startBackend, startSyncgate, rawExchange, parseResponses } from '../lib/harness.mjs';
import { userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo';
const APP = `[app:demo]\nuser_sync = off\nsecret_key = ${KEY}\n`;
const UT = userToken('demo', 'alice', KEY);
let be;
const sgs = {};
before(async () => {
  be = await startBackend({ apps: { demo: KEY } });
  sgs.reflect = await startSyncgate(be.port, APP);
  sgs.list = await startSyncgate(be.port, `cors_origins = https://app.example.com, http://localhost:3000\n${APP}`);
  sgs.any = await startSyncgate(be.port, `cors_origins = *\n${APP}`);
  sgs.off = await startSyncgate(be.port, `cors_origins = off\n${APP}`);
});
after(async () => {
  for (const s of Object.values(sgs)) await s.stop();
  await be.stop();
});

// A refused PUT of a user (no body: the connection stays open) from ORIGIN (null: none).
async function refused(sg, origin) {
  const res = await rawExchange(sg.port, `PUT /v1/demo/users/alice HTTP/1.1\r\nHost: sg\r\nAuthorization: Bearer ${UT}\r\n` +
    (origin === null ? '' : `Origin: ${origin}\r\n`) + 'Content-Length: 0\r\n\r\n', { idle: 300 });
  const r = parseResponses(res.data)[0];
  assert.equal(r.status, 403);
  assert.equal(JSON.parse(r.body.toString()).errorCode, 'USER_SYNC_DISABLED');
  return r;
}

test('by default a refusal names the request\'s origin, so the page can read the reason', async () => {
  const r = await refused(sgs.reflect, 'https://chat.example.org');
  assert.equal(r.h('access-control-allow-origin'), 'https://chat.example.org');
  assert.match(r.h('vary') || '', /Origin/);
});

test('without an Origin, or with one that is not an origin, no CORS header is added', async () => {
  assert.equal((await refused(sgs.reflect, null)).h('access-control-allow-origin'), undefined);
  for (const bad of ['null', 'https://a b', 'https://x.example/path', 'javascript:alert(1)', 'https://x.example:99999999'])
    assert.equal((await refused(sgs.reflect, bad)).h('access-control-allow-origin'), undefined, bad);
});

test('a list names only its origins', async () => {
  assert.equal((await refused(sgs.list, 'https://app.example.com')).h('access-control-allow-origin'), 'https://app.example.com');
  assert.equal((await refused(sgs.list, 'http://localhost:3000')).h('access-control-allow-origin'), 'http://localhost:3000');
  assert.equal((await refused(sgs.list, 'https://evil.example')).h('access-control-allow-origin'), undefined);
});

test('"*" is "*", and off adds nothing', async () => {
  assert.equal((await refused(sgs.any, 'https://chat.example.org')).h('access-control-allow-origin'), '*');
  assert.equal((await refused(sgs.off, 'https://chat.example.org')).h('access-control-allow-origin'), undefined);
});

test('syncgate\'s other own answers (a malformed request) carry it too', async () => {
  const res = await rawExchange(sgs.reflect.port, 'GET /v1/demo/users/a%zz HTTP/1.1\r\nHost: sg\r\nOrigin: https://chat.example.org\r\n\r\n', { idle: 300 });
  const r = parseResponses(res.data)[0];
  assert.equal(r.status, 400);
  assert.equal(r.h('access-control-allow-origin'), 'https://chat.example.org');
});

test('the backend\'s answers pass unchanged: its own CORS headers, none added', async () => {
  const res = await rawExchange(sgs.list.port, 'GET /v1/demo/users/alice HTTP/1.1\r\nHost: sg\r\nOrigin: https://evil.example\r\n' +
    `Authorization: Bearer ${UT}\r\n\r\n`, { idle: 300 });
  const r = parseResponses(res.data)[0];
  assert.notEqual(r.status, 403);
  const acao = r.headers.filter(([k]) => k.toLowerCase() === 'access-control-allow-origin').map(([, v]) => v);
  assert.deepEqual(acao, ['https://evil.example'], 'exactly the backend\'s one header');
});

test('a bad cors_origins value is a config error naming its line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-cors-'));
  const file = path.join(dir, 'bad.conf');
  fs.writeFileSync(file, '[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\ncors_origins = ftp://files.example\n');
  const r = spawnSync(SYNCGATE, ['-t', '-c', file], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr + r.stdout, /bad\.conf:4/);
  assert.match(r.stderr + r.stdout, /cors_origins: 'ftp:\/\/files\.example' is not an origin/);
});
