// [fleet] (#19) under `syncgate -t -c FILE`: a good section passes without a connection being
// made (nothing listens where it points, and a listener there sees nobody); a host name, a bad
// key_prefix, a password_file that cannot be read or is empty, a poll or timeout out of range,
// a section without redis and an unknown key are refused, each naming the line and the key.
// Started for real, the same error is a JSON startup line.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SYNCGATE, freePort } from '../lib/harness.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-fleetconf-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const pwFile = path.join(dir, 'redis-password');
fs.writeFileSync(pwFile, 'secret-pw\n');
const HEAD = '[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n[app:demo]\nuser_sync = off\n'; // 5 lines
const FLEET_LINE = 7; // the first key after HEAD and the [fleet] header

let n = 0;
// Writes HEAD + "[fleet]" + LINES to a file of its own and runs syncgate -t on it.
function check(lines) {
  const file = path.join(dir, `fleet${++n}.conf`);
  fs.writeFileSync(file, `${HEAD}[fleet]\n${lines}`);
  const r = spawnSync(SYNCGATE, ['-t', '-c', file], { encoding: 'utf8' });
  return { ...r, file };
}

// -t refuses LINES with "FILE:LINE: ..." naming KEY (a regexp source) on the expected line.
function refused(lines, key, line = FLEET_LINE) {
  const r = check(lines);
  assert.equal(r.status, 1, `${JSON.stringify(lines)} accepted: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`^${r.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}: `), r.stderr);
  assert.match(r.stderr, new RegExp(key), `the message names ${key}: ${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  return r.stderr;
}

test('-t accepts a good [fleet], every key set, and makes no connection', async () => {
  const port = await freePort();
  let connections = 0;
  const srv = net.createServer((s) => { connections++; s.destroy(); });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  try {
    const r = check(`redis = 127.0.0.1:${port}\nkey_prefix = team-1.syncgate:\npassword_file = ${pwFile}\n` +
      `state_file = ${path.join(dir, 'fleet.json')}\npoll = 250ms\ntimeout = 2s\ninstance = edge-1\n`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(connections, 0, '-t connects to nothing');
  } finally {
    srv.close();
  }
  // the defaults: only redis; an IPv6 literal; a unix socket; the range's ends
  for (const lines of ['redis = 127.0.0.1:6379\n', 'redis = [::1]:6379\n', 'redis = unix:/run/redis/redis.sock\n',
    'redis = 127.0.0.1:6379\npoll = 100ms\ntimeout = 50ms\n', 'redis = 127.0.0.1:6379\npoll = 60s\ntimeout = 30s\n',
    'redis = 127.0.0.1:6379\nkey_prefix = a\n', `redis = 127.0.0.1:6379\nkey_prefix = ${'k'.repeat(64)}\n`]) {
    const r = check(lines);
    assert.equal(r.status, 0, `${JSON.stringify(lines)}: ${r.stderr}`);
  }
});

test('redis: a host name is refused (hiredis 0.14 would resolve it blocking), as is an address without a port', () => {
  const msg = refused('redis = localhost:6379\n', '\\[fleet\\] redis');
  assert.match(msg, /IP address/);
  assert.match(msg, /localhost:6379/, 'the value is quoted');
  refused('redis = redis.internal.example:6379\n', '\\[fleet\\] redis');
  refused('redis = 127.0.0.1\n', '\\[fleet\\] redis');
  refused('redis = 127.0.0.1:notaport\n', '\\[fleet\\] redis');
  refused('redis = unix:relative/redis.sock\n', '\\[fleet\\] redis');
  refused('redis =\n', '\\[fleet\\] redis');
});

test('key_prefix: 1-64 of [A-Za-z0-9:_.-]', () => {
  for (const bad of ['has space', 'star*', 'sync{gate}', 'brace{', 'new\\nline', 'k'.repeat(65)])
    refused(`redis = 127.0.0.1:6379\nkey_prefix = ${bad}\n`, '\\[fleet\\] key_prefix', FLEET_LINE + 1);
});

test('password_file: missing, empty or a directory is refused by -t', () => {
  const empty = path.join(dir, 'empty-password');
  fs.writeFileSync(empty, '');
  for (const f of [path.join(dir, 'no-such-file'), empty, dir])
    refused(`redis = 127.0.0.1:6379\npassword_file = ${f}\n`, '\\[fleet\\] password_file', FLEET_LINE + 1);
  // the password itself is never printed
  const r = check(`redis = localhost:6379\npassword_file = ${pwFile}\n`);
  assert.equal(r.status, 1);
  assert.ok(!r.stderr.includes('secret-pw'));
});

test('poll (100ms..60s) and timeout (50ms..30s) out of range, or without a unit', () => {
  for (const v of ['99ms', '61s', '0s', '1', 'soon'])
    refused(`redis = 127.0.0.1:6379\npoll = ${v}\n`, '\\[fleet\\] poll', FLEET_LINE + 1);
  for (const v of ['49ms', '31s', '0ms', '5'])
    refused(`redis = 127.0.0.1:6379\ntimeout = ${v}\n`, '\\[fleet\\] timeout', FLEET_LINE + 1);
});

test('a [fleet] without redis, an unknown key, a key given twice', () => {
  refused('key_prefix = syncgate:\n', 'redis', FLEET_LINE - 1); // names the section's header
  refused('redis = 127.0.0.1:6379\nsentinel = 127.0.0.1:26379\n', 'sentinel', FLEET_LINE + 1);
  const r = check('redis = 127.0.0.1:6379\nredis = 127.0.0.2:6379\n');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /redis/);
});

test('started for real, a bad [fleet] is a JSON startup line and exit 1', async () => {
  const file = path.join(dir, 'start.conf');
  fs.writeFileSync(file, `${HEAD}[fleet]\nredis = localhost:6379\n`);
  const p = spawn(SYNCGATE, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => p.on('exit', r));
  assert.equal(code, 1);
  const line = JSON.parse(err.trim().split('\n').at(-1));
  assert.equal(line.event, 'startup');
  assert.equal(line.level, 'error');
  assert.match(line.why, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${FLEET_LINE}: \\[fleet\\] redis`));
});
