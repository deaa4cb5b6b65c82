// Operating syncgate: the admin API (auth, health, readiness, runtime switches taking effect
// on open sockets), reload semantics with runtime overrides, /metrics counting exactly what
// happened, report mode, access lines, and workers = 2 (the SDK suite, and reloads under
// load dropping no request).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startBackend, startSyncgate, rawExchange, parseResponses, freePort, sleep, waitFor } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { session, uniqueUser, settle } from './sdk.mjs';
import { defineScenarios } from './sdk_scenarios.mjs';

const KEY = 'sk_test_demo', TOKEN = 'admin-token-123';
const adminPort = (admin) => admin.port;
const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); setTimeout(() => process.exit(), 200).unref(); });

async function setup(appConf, { workers = 1, extra = '', adminExtra = '' } = {}) {
  const be = await startBackend({ apps: { demo: KEY } });
  cleanup.push(() => be.stop());
  const adminPort = await freePort();
  const tokenFile = path.join(fs.mkdtempSync('/tmp/sgtok-'), 'token');
  fs.writeFileSync(tokenFile, TOKEN + '\n');
  const conf = (app) => `workers = ${workers}\n[admin]\nlisten = 127.0.0.1:${adminPort}\ntoken_file = ${tokenFile}\n${adminExtra}[app:demo]\nsecret_key = ${KEY}\n${app}\n${extra}`;
  const sg = await startSyncgate(be.port, conf(appConf));
  cleanup.push(() => sg.stop());
  const admin = async (method, p, body, token = TOKEN) => {
    const r = await fetch(`http://127.0.0.1:${adminPort}${p}`, { method, headers: token ? { Authorization: `Bearer ${token}` } : {}, body: body ? JSON.stringify(body) : undefined });
    return { status: r.status, text: await r.text() };
  };
  admin.port = adminPort;
  return { be, sg, admin, reconf: (app) => sg.writeConf(conf(app).replace(/^/, '')) };
}

test('admin API: token required but for probes; a read-only metrics token; unknown app 404; bad value 400', async () => {
  const metricsTokenFile = path.join(fs.mkdtempSync('/tmp/sgtok-'), 'metrics');
  fs.writeFileSync(metricsTokenFile, 'scrape-only-456\n');
  const { be, sg, admin } = await setup('user_sync = on', { adminExtra: `metrics_token_file = ${metricsTokenFile}\n` });
  // probes need no token (kubelets have none; rotating the token must not fail them) and
  // are not logged as unauthorized
  assert.equal((await admin('GET', '/healthz', null, null)).status, 200);
  assert.equal((await admin('GET', '/healthz', null, 'wrong')).status, 200);
  assert.equal((await admin('GET', '/readyz', null, null)).status, 200);
  assert.ok(!sg.logs().some((l) => l.event === 'admin_unauthorized'));
  // everything else needs the token; /metrics also takes the read-only metrics token,
  // which changes nothing
  assert.equal((await admin('GET', '/apps', null, null)).status, 401);
  assert.equal((await admin('GET', '/metrics', null, null)).status, 401);
  assert.equal((await admin('GET', '/metrics', null, 'scrape-only-456')).status, 200);
  assert.equal((await admin('GET', '/metrics')).status, 200);
  assert.equal((await admin('GET', '/apps', null, 'scrape-only-456')).status, 401);
  assert.equal((await admin('PUT', '/apps/demo', { user_sync: 'off' }, 'scrape-only-456')).status, 401);
  assert.equal((await admin('PUT', '/apps/nosuchapp', { user_sync: 'off' })).status, 404);
  assert.equal((await admin('PUT', '/apps/demo', { user_sync: 'maybe' })).status, 400);
  assert.equal((await admin('PUT', '/apps/demo', { colour: 'red' })).status, 400);
  // a key given twice (cJSON would read the first, another reader the last) and a body that
  // changes nothing are refused, and change nothing
  const twice = await fetch(`http://127.0.0.1:${adminPort(admin)}/apps/demo`, { method: 'PUT', headers: { Authorization: `Bearer ${TOKEN}` }, body: '{"user_sync":"off","user_sync":"on"}' });
  assert.equal(twice.status, 400);
  assert.match(await twice.text(), /given twice/);
  const empty = await admin('PUT', '/apps/demo', {});
  assert.equal(empty.status, 400);
  assert.match(empty.text, /names no switch/);
  const apps = JSON.parse((await admin('GET', '/apps')).text);
  const demo = apps.apps.find((a) => a.id === 'demo');
  assert.deepEqual([demo.user_sync, demo.secret_key], ['on', true]);
  assert.ok(!JSON.stringify(apps).includes(KEY), 'the key itself is never shown');
  await be.stop();
  assert.equal((await admin('GET', '/readyz')).status, 503);
});

test('a switch flipped over the admin API applies to the next call on an open SDK socket', async () => {
  const { sg, admin } = await setup('user_sync = on\nconversation_sync = on');
  const me = uniqueUser('flip');
  const s = session({ host: `127.0.0.1:${sg.port}`, appId: 'demo', userId: me, key: KEY });
  assert.ok((await settle(() => s.currentUser.set({ name: 'one' }))).ok);
  assert.equal((await admin('PUT', '/apps/demo', { user_sync: 'off' })).status, 200);
  const r = await settle(() => s.currentUser.set({ name: 'two' }));
  assert.equal(r.ok, false);
  assert.match(r.message, /USER_SYNC_DISABLED/);
  assert.equal((await admin('PUT', '/apps/demo', { user_sync: 'on' })).status, 200);
  assert.ok((await settle(() => s.currentUser.set({ name: 'three' }))).ok);
  const line = sg.logs().find((l) => l.event === 'admin_change');
  assert.equal(line.app, 'demo');
  assert.match(line.change, /user_sync=off/);
  assert.equal(line.was, 'user_sync=on conversation_sync=on mode=enforce', 'the previous value is logged');
  assert.equal(line.by, '127.0.0.1');
  const last = sg.logs().filter((l) => l.event === 'admin_change').at(-1);
  assert.match(last.was, /^user_sync=off /);
});

test('reload: the file wins where it changed a switch; a runtime flip of another switch survives', async () => {
  const { sg, admin, reconf } = await setup('user_sync = off\nconversation_sync = on');
  const state = async () => JSON.parse((await admin('GET', '/apps')).text).apps.find((a) => a.id === 'demo');
  await admin('PUT', '/apps/demo', { user_sync: 'on', conversation_sync: 'off' });
  const reload = async (conf) => {
    const n = sg.logs().filter((l) => l.event === 'reload').length;
    reconf(conf);
    sg.signal('SIGHUP');
    await waitFor(() => sg.logs().filter((l) => l.event === 'reload').length > n);
  };
  let a = await state();
  assert.deepEqual(a.source, { user_sync: 'admin', conversation_sync: 'admin', mode: 'file' }, 'where each value comes from');
  const one = await admin('GET', '/apps/demo');
  assert.equal(one.status, 200);
  assert.deepEqual(JSON.parse(one.text), a, 'GET /apps/demo answers the app as /apps lists it');
  assert.equal((await admin('GET', '/apps/nosuchapp')).status, 404);
  await reload('user_sync = on\nconversation_sync = on'); // the file changed user_sync only
  a = await state();
  assert.deepEqual([a.user_sync, a.conversation_sync], ['on', 'off'], 'runtime conversation_sync kept');
  assert.deepEqual(a.source, { user_sync: 'file', conversation_sync: 'admin', mode: 'file' });
  await reload('user_sync = off\nconversation_sync = on'); // the override of user_sync is gone
  a = await state();
  assert.deepEqual([a.user_sync, a.conversation_sync], ['off', 'off']);
  const n = sg.logs().filter((l) => l.event === 'reload_failed').length;
  reconf('user_sync = sometimes');
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().filter((l) => l.event === 'reload_failed').length > n);
  const m = (await admin('GET', '/metrics')).text;
  assert.match(m, /^syncgate_reloads_total\{result="ok"\} 2$/m);
  assert.match(m, /^syncgate_reloads_total\{result="failed"\} 1$/m);
});

test('/metrics counts exactly the calls of a scripted scenario', async () => {
  const { be, sg, admin } = await setup('user_sync = off');
  const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'alice', KEY) }, {}]));
  await ws.json(0);
  for (let i = 1; i <= 3; i++) { ws.sendText(`[${i},"GET","/ping",{},{}]`); await ws.json(i); }
  for (let i = 4; i <= 5; i++) { ws.sendText(`[${i},"PUT","/users/alice",{"name":"x"},{}]`); await ws.json(i); }
  // createIfNotExists of a user that exists: 409, which the SDK takes as success: counted and
  // logged as "exists", not as a refusal
  await be.seed({ appId: 'demo', users: { carol: { name: 'Carol' } } });
  ws.sendText('[6,"POST","/users/carol",{"name":"C"},{}]');
  assert.equal((await ws.json(6))[1], 409);
  for (let i = 0; i < 4; i++) await rawExchange(sg.port, 'GET /bytes/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', { idle: 500 });
  await rawExchange(sg.port, 'PUT /v1/demo/users/bob HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}', { idle: 500 });
  // decision counts are published every 250 ms: poll until the scenario's last one is there
  let m = '';
  await waitFor(async () => {
    m = (await admin('GET', '/metrics')).text;
    return /^syncgate_decisions_total\{app="demo",op="user-set",verdict="refuse"\} 3$/m.test(m);
  }, { timeout: 10000, every: 100 });
  const val = (re) => { const x = m.match(re); return x ? Number(x[1]) : NaN; };
  assert.equal(val(/^syncgate_decisions_total\{app="demo",op="ping",verdict="allow"\} (\d+)$/m), 3);
  assert.equal(val(/^syncgate_decisions_total\{app="demo",op="auth",verdict="allow"\} (\d+)$/m), 1);
  assert.equal(val(/^syncgate_decisions_total\{app="demo",op="user-set",verdict="refuse"\} (\d+)$/m), 3); // 2 ws + 1 http
  assert.equal(val(/^syncgate_decisions_total\{app="demo",op="user-create",verdict="exists"\} (\d+)$/m), 1);
  assert.ok(!/op="user-create",verdict="refuse"/.test(m));
  assert.equal(val(/^syncgate_ws_refused_total (\d+)$/m), 2);
  assert.equal(val(/^syncgate_http_refused_total (\d+)$/m), 1);
  assert.equal(val(/^syncgate_ws_frames_total\{direction="client"\} (\d+)$/m), 7);
  assert.equal(val(/^syncgate_http_requests_total (\d+)$/m), 6); // upgrade + 4 GET + 1 PUT
  assert.equal(val(/^syncgate_ws_open (\d+)$/m), 1);
  assert.equal(val(/^syncgate_http_request_duration_seconds_count (\d+)$/m), 6);
  assert.match(m, /# TYPE syncgate_http_request_duration_seconds histogram/);
  // responses by class and by who answered: 4 GETs and the 101 by the backend, the refused PUT by syncgate
  assert.equal(val(/^syncgate_http_responses_total\{class="2xx",by="backend"\} (\d+)$/m), 4);
  assert.equal(val(/^syncgate_http_responses_total\{class="1xx",by="backend"\} (\d+)$/m), 1);
  assert.equal(val(/^syncgate_http_responses_total\{class="4xx",by="syncgate"\} (\d+)$/m), 1);
  assert.equal(val(/^syncgate_http_responses_total\{class="4xx",by="backend"\} (\d+)$/m), 0);
  // the upstream's time to a head (the upgrade's 101 and the 4 GETs) and the one lookup (carol)
  assert.equal(val(/^syncgate_upstream_response_seconds_count (\d+)$/m), 5);
  assert.equal(val(/^syncgate_lookup_duration_seconds_count (\d+)$/m), 1);
  assert.match(m, /^syncgate_lookup_duration_seconds_bucket\{le="\+Inf"\} 1$/m);
  assert.match(m, /^syncgate_build_info\{version="[0-9.]+",openssl="3\.[^"]+",libevent="2\.1[^"]*"\} 1$/m);
  assert.equal(val(/^syncgate_reloads_total\{result="ok"\} (\d+)$/m), 0);
  ws.destroy();
  // access lines: one per request, no query strings, no tokens
  await waitFor(() => sg.logs().filter((l) => l.event === 'access').length >= 6); // written every 250 ms
  const access = sg.logs().filter((l) => l.event === 'access');
  assert.equal(access.filter((l) => l.request === 'GET /bytes/5' && l.status === 200).length, 4);
  // who answered, the upstream's time, the app, and an id per request
  const refusedPut = access.find((l) => l.request === 'PUT /v1/demo/users/bob');
  assert.deepEqual([refusedPut.status, refusedPut.by, refusedPut.app, refusedPut.upstream_ms], [403, 'syncgate', 'demo', null]);
  const relayed = access.find((l) => l.request === 'GET /bytes/5');
  assert.equal(relayed.by, 'backend');
  assert.ok(typeof relayed.upstream_ms === 'number' && relayed.upstream_ms >= 0 && typeof relayed.ms === 'number', JSON.stringify(relayed));
  assert.equal(new Set(access.map((l) => l.id)).size, access.length, 'ids are unique');
  assert.ok(access.every((l) => /^w0-\d+-\d+$/.test(l.id)), JSON.stringify(access.map((l) => l.id)));
  // the refused PUT's decision line carries the same id as its access line
  const putDecision = sg.logs().find((l) => l.event === 'refuse' && l.transport === 'http');
  assert.equal(putDecision.id, refusedPut.id);
  assert.ok(access.some((l) => l.request === 'GET /v1/demo/realtime/alice' && l.status === 101));
  await waitFor(() => sg.logs().some((l) => l.event === 'ws_closed'));
  const closed = sg.logs().find((l) => l.event === 'ws_closed');
  assert.deepEqual([closed.frames_in, closed.refused], [7, 2], 'numbers as JSON numbers');
  assert.ok(Number(closed.bytes_in) > 150 && Number(closed.bytes_out) > 50, JSON.stringify(closed));
  assert.match(closed.socket, /^w0-\d+$/);
  assert.ok(sg.logs().some((l) => l.event === 'refuse' && l.socket === closed.socket));
  assert.ok(sg.logs().some((l) => l.event === 'exists' && l.op === 'user-create' && l.status === 409));
  assert.ok(!sg.logs().some((l) => l.event === 'refuse' && l.op === 'user-create'));
  assert.ok(!sg.stderr().includes(KEY) && !sg.stderr().includes(userToken('demo', 'alice', KEY)), 'no keys or tokens in logs');
  void be;
});

test('report mode: the forbidden call reaches the backend and a would_refuse line is logged', async () => {
  const { be, sg } = await setup('user_sync = off\nmode = report');
  await be.clearLog();
  const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'alice', KEY) }, {}]));
  await ws.json(0);
  ws.sendText('[1,"PUT","/users/alice",{"name":"reported"},{}]');
  assert.equal((await ws.json(1))[1], 200, 'the backend answered');
  assert.equal((await be.state('demo')).users.alice.name, 'reported');
  const line = sg.logs().find((l) => l.event === 'would_refuse');
  assert.deepEqual([line.app, line.op, line.errorCode, line.mode], ['demo', 'user-set', 'USER_SYNC_DISABLED', 'report']);
  ws.destroy();
});

test('workers = 2: the SDK suite passes and reloads under load drop no request', async () => {
  const { sg } = await setup('user_sync = on\nconversation_sync = on', { workers: 2 });
  const sessions = [];
  for (let i = 0; i < 6; i++) {
    const s = session({ host: `127.0.0.1:${sg.port}`, appId: 'demo', userId: uniqueUser('w'), key: KEY });
    sessions.push(settle(() => s.currentUser.set({ name: `w${i}` })));
  }
  assert.ok((await Promise.all(sessions)).every((r) => r.ok));
  // (a generous request timeout: under ASan on two cores a slow answer is not a dropped one)
  const wrk = spawn('wrk', ['-t2', '-c20', '-d3s', '--timeout', '10s', `http://127.0.0.1:${sg.port}/bytes/10`]);
  let out = '';
  wrk.stdout.on('data', (d) => { out += d; });
  for (let i = 0; i < 5; i++) { await sleep(400); sg.signal('SIGHUP'); }
  await new Promise((r) => wrk.on('exit', r));
  assert.match(out, /requests in/);
  assert.ok(!/Non-2xx|Socket errors/.test(out), out);
  assert.ok(sg.logs().filter((l) => l.event === 'reload').length >= 5);
  assert.equal(sg.logs().find((l) => l.event === 'ready').workers, 2);
});

let shared;
test('workers = 2: start for the SDK suite', async () => {
  const { sg } = await setup('user_sync = on\nconversation_sync = on', { workers: 2 });
  shared = { host: `127.0.0.1:${sg.port}`, appId: 'demo', key: KEY };
});
defineScenarios('workers = 2', () => shared, 'token');
