// Refusal budgets (#18): refusal_budget = 3/1m and refusal_ban = 2s. A user who keeps sending a
// refused change gets its three refusals as usual, then TOO_MANY_REFUSED_CALLS from memory
// (403, never 429, and never on /session/renew), is banned: the socket closes 1008 and a new
// upgrade is refused for the ban's length, then comes back. With 4 workers the budget is one
// count for the process. Report mode changes nothing and logs what it would have done. The
// end of a used-up budget is one budget_reset line, whoever sees it first (a change, or the
// upgrade after a ban). Over HTTP, a browser's changes (user token) count against the same
// budget as the user's realtime ones, and a used-up budget refuses them from memory while
// reads, and the user's /session/renew on the realtime socket, pass.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startBackend, startSyncgate, sleep, waitFor, rawExchange, parseResponses } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo';
let be, sg, sg4, sgr, sgw, sgh;
const APP = (extra = '') => `[app:demo]\nuser_sync = off\nrefusal_budget = 3/1m\nrefusal_ban = 2s\nsecret_key = ${KEY}\n${extra}`;
before(async () => {
  be = await startBackend({ apps: { demo: KEY, demoban: KEY } });
  sg = await startSyncgate(be.port, APP());
  sg4 = await startSyncgate(be.port, `workers = 4\n${APP()}`);
  sgr = await startSyncgate(be.port, APP('mode = report\n'));
  // short windows: 2 refusals per second, then 2 per second with a 1 s ban
  sgw = await startSyncgate(be.port, `[app:demo]\nuser_sync = off\nrefusal_budget = 2/1s\nsecret_key = ${KEY}\n` +
    `[app:demoban]\nuser_sync = off\nrefusal_budget = 2/1s\nrefusal_ban = 1s\nsecret_key = ${KEY}\n`);
  // no ban: a used-up budget leaves the sockets open
  sgh = await startSyncgate(be.port, `[app:demo]\nuser_sync = off\nrefusal_budget = 3/1m\nsecret_key = ${KEY}\n`);
});
after(async () => { for (const p of [sg, sg4, sgr, sgw, sgh]) await p?.stop(); await be?.stop(); });

async function open(port, user, app = 'demo') {
  const ws = await RawWs.open(port, `/v1/${app}/realtime/${user}`);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken(app, user, KEY) }, {}]));
  assert.equal((await ws.json(0))[1], 200);
  return ws;
}
const setUser = async (ws, seq, user) => { ws.sendText(JSON.stringify([seq, 'PUT', `/users/${user}`, { name: 'x' }, {}])); return ws.json(seq); };

test('three refusals, then TOO_MANY_REFUSED_CALLS from memory; the ban closes the socket 1008, refuses the upgrade, and ends', async () => {
  const user = 'retrying';
  const ws = await open(sg.port, user);
  for (let i = 1; i <= 3; i++) {
    const a = await setUser(ws, i, user);
    assert.equal(a[1], 403);
    assert.equal(a[2].errorCode, 'USER_SYNC_DISABLED');
  }
  // the third used the budget up and banned the user: the socket is closed 1008
  const cf = await ws.closeFrame(3000);
  assert.ok(cf, 'a close frame');
  assert.equal(cf.code, 1008);
  assert.match(cf.reason, /banned/);
  await waitFor(() => sg.logs().some((l) => l.event === 'budget_exhausted' && l.user === user));
  assert.equal(sg.logs().filter((l) => l.event === 'budget_exhausted' && l.user === user).length, 1, 'one line, not one per call');
  assert.ok(sg.logs().some((l) => l.event === 'banned' && l.user === user));
  // a new socket for the user is refused while banned (403, not 429)
  const r = parseResponses((await rawExchange(sg.port,
    `GET /v1/demo/realtime/${user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)).data)[0];
  assert.equal(r.status, 403);
  assert.equal(JSON.parse(r.body).errorCode, 'USER_BANNED');
  // another user is not affected
  const other = await open(sg.port, 'bystander');
  assert.equal((await setUser(other, 1, 'bystander'))[2].errorCode, 'USER_SYNC_DISABLED');
  other.destroy();
  // after the ban: back, but the budget window (1 min) still holds: changes refused from memory,
  // renewals and reads pass
  await sleep(2200);
  const back = await open(sg.port, user);
  const a = await setUser(back, 1, user);
  assert.equal(a[1], 403);
  assert.equal(a[2].errorCode, 'TOO_MANY_REFUSED_CALLS');
  assert.match(a[2].reasons[0], /REST API/);
  back.sendText(JSON.stringify([2, 'GET', '/users', { ids: [user] }, {}]));
  assert.equal((await back.json(2))[1], 200, 'reads pass');
  back.destroy();
  const m = parseResponses((await rawExchange(sg.port, 'GET /v1/demo/users/x HTTP/1.1\r\nHost: x\r\n\r\n')).data)[0];
  assert.ok(m); // (the HTTP side is unaffected)
});

test('with 4 workers the budget counts once: refusals spread over sockets (and workers) add up', async () => {
  const user = 'spread';
  const socks = [];
  for (let i = 0; i < 4; i++) socks.push(await open(sg4.port, user));
  const codes = [];
  for (let i = 0; i < 4; i++) {
    const a = await setUser(socks[i], 1, user);
    codes.push(a ? a[2].errorCode : 'closed');
  }
  assert.deepEqual(codes.slice(0, 3), ['USER_SYNC_DISABLED', 'USER_SYNC_DISABLED', 'USER_SYNC_DISABLED']);
  assert.ok(['TOO_MANY_REFUSED_CALLS', 'closed'].includes(codes[3]), codes.join());
  await waitFor(() => sg4.logs().filter((l) => l.event === 'budget_exhausted' && l.user === user).length === 1);
  socks.forEach((s) => s.destroy());
});

test('report mode: refusals pass as would_refuse, the budget is only logged, nobody is banned', async () => {
  const user = 'reported';
  const ws = await open(sgr.port, user);
  for (let i = 1; i <= 5; i++) {
    const a = await setUser(ws, i, user);
    assert.equal(a[1], 200, `call ${i} passes in report mode`);
  }
  assert.ok(!ws.closed);
  await waitFor(() => sgr.logs().some((l) => l.event === 'would_budget' && l.user === user));
  assert.ok(sgr.logs().some((l) => l.event === 'would_ban' && l.user === user));
  assert.ok(!sgr.logs().some((l) => l.event === 'banned' || l.event === 'budget_exhausted'));
  ws.destroy();
});

const lines = (p, event, user) => p.logs().filter((l) => l.event === event && l.user === user);

test('the end of a used-up budget is one budget_reset line; the next change is decided again', async () => {
  const user = 'resetting';
  const ws = await open(sgw.port, user);
  for (let i = 1; i <= 2; i++) assert.equal((await setUser(ws, i, user))[2].errorCode, 'USER_SYNC_DISABLED');
  assert.equal((await setUser(ws, 3, user))[2].errorCode, 'TOO_MANY_REFUSED_CALLS');
  await waitFor(() => lines(sgw, 'budget_exhausted', user).length === 1);
  assert.equal(lines(sgw, 'budget_reset', user).length, 0, 'not while it lasts');
  await sleep(1100);
  assert.equal((await setUser(ws, 4, user))[2].errorCode, 'USER_SYNC_DISABLED', 'decided again');
  await waitFor(() => lines(sgw, 'budget_reset', user).length === 1);
  const reset = lines(sgw, 'budget_reset', user)[0];
  assert.equal(reset.app, 'demo');
  // the same budget used up and ended again: one more line each, never one per call
  assert.equal((await setUser(ws, 5, user))[2].errorCode, 'USER_SYNC_DISABLED');
  for (let i = 6; i <= 8; i++) assert.equal((await setUser(ws, i, user))[2].errorCode, 'TOO_MANY_REFUSED_CALLS');
  await sleep(1100);
  ws.sendText(JSON.stringify([9, 'GET', '/users', { ids: [user] }, {}]));
  assert.equal((await ws.json(9))[1], 200);
  assert.equal(lines(sgw, 'budget_reset', user).length, 1, 'a read does not look at the budget');
  assert.equal((await setUser(ws, 10, user))[2].errorCode, 'USER_SYNC_DISABLED');
  await waitFor(() => lines(sgw, 'budget_reset', user).length === 2);
  await sleep(300);
  assert.equal(lines(sgw, 'budget_reset', user).length, 2);
  assert.equal(lines(sgw, 'budget_exhausted', user).length, 2);
  ws.destroy();
});

test('after a ban, the upgrade that sees it ended logs the budget_reset (once)', async () => {
  const user = 'rebanned';
  const ws = await open(sgw.port, user, 'demoban');
  for (let i = 1; i <= 2; i++) await setUser(ws, i, user);
  assert.equal((await ws.closeFrame(3000))?.code, 1008);
  await sleep(1200);
  const back = await open(sgw.port, user, 'demoban'); // the first look at the budget since the ban
  await waitFor(() => lines(sgw, 'budget_reset', user).length === 1);
  assert.equal(lines(sgw, 'budget_reset', user)[0].app, 'demoban');
  assert.equal((await setUser(back, 1, user))[2].errorCode, 'USER_SYNC_DISABLED');
  await sleep(300);
  assert.equal(lines(sgw, 'budget_reset', user).length, 1);
  back.destroy();
});

// One HTTP request with a user token of USER (signed with KEY, or another key) on its own
// connection: resolves with {status, errorCode}.
async function http(port, method, target, body, user, { key = KEY } = {}) {
  const b = Buffer.from(body === undefined ? '' : JSON.stringify(body));
  const r = parseResponses((await rawExchange(port, Buffer.concat([Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: sg.test\r\n` +
    `Authorization: Bearer ${userToken('demo', user, key)}\r\nContent-Type: application/json\r\n` +
    `${b.length ? `Content-Length: ${b.length}\r\n` : ''}Connection: close\r\n\r\n`), b]))).data)[0];
  return r && { status: r.status, errorCode: r.body.length ? JSON.parse(r.body).errorCode : undefined };
}

test('over HTTP: a browser\'s refused changes count against the user\'s budget; used up, HTTP changes are refused from memory, reads and renewals pass', async () => {
  const user = 'both';
  await be.seed({ appId: 'demo', users: { [user]: { name: 'Both' } } });
  const ws = await open(sgh.port, user);
  // two refusals over HTTP, the third on the realtime socket: one budget
  for (let i = 0; i < 2; i++)
    assert.deepEqual(await http(sgh.port, 'PUT', `/v1/demo/users/${user}`, { name: 'x' }, user), { status: 403, errorCode: 'USER_SYNC_DISABLED' });
  assert.equal((await setUser(ws, 1, user))[2].errorCode, 'USER_SYNC_DISABLED');
  await waitFor(() => lines(sgh, 'budget_exhausted', user).length === 1);
  assert.equal(lines(sgh, 'budget_exhausted', user)[0].transport, 'ws');
  // used up: every change over HTTP is refused from memory, even one the switches allow
  const from = (await be.log()).length;
  assert.deepEqual(await http(sgh.port, 'PUT', `/v1/demo/users/${user}`, { name: 'x' }, user), { status: 403, errorCode: 'TOO_MANY_REFUSED_CALLS' });
  assert.deepEqual(await http(sgh.port, 'PUT', '/v1/demo/conversations/c_both', { subject: 's' }, user), { status: 403, errorCode: 'TOO_MANY_REFUSED_CALLS' });
  assert.deepEqual(await http(sgh.port, 'PUT', `/public_api/v1/demo/users/${user}`, { name: 'x' }, user), { status: 403, errorCode: 'TOO_MANY_REFUSED_CALLS' });
  assert.ok(!(await be.log()).slice(from).some((e) => e.kind === 'http' && e.method === 'PUT'), 'nothing forwarded');
  // ... and on the realtime socket, where /session/renew and reads pass
  assert.equal((await setUser(ws, 2, user))[2].errorCode, 'TOO_MANY_REFUSED_CALLS');
  ws.sendText(JSON.stringify([3, 'POST', '/session/renew', { token: userToken('demo', user, KEY) }, {}]));
  assert.equal((await ws.json(3))[1], 200, 'renewal passes');
  ws.sendText(JSON.stringify([4, 'GET', '/users', { ids: [user] }, {}]));
  assert.equal((await ws.json(4))[1], 200, 'a realtime read passes');
  assert.equal((await http(sgh.port, 'GET', `/v1/demo/users/${user}`, undefined, user)).status, 200, 'an HTTP read passes');
  // another user's HTTP changes are their own
  assert.equal((await http(sgh.port, 'PUT', '/v1/demo/users/other', { name: 'x' }, 'other')).errorCode, 'USER_SYNC_DISABLED');
  // a server credential is never budgeted
  const srv = parseResponses((await rawExchange(sgh.port, `GET /v1/demo/users/${user} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nConnection: close\r\n\r\n`)).data)[0];
  assert.equal(srv.status, 200);
  ws.destroy();
});

test('over HTTP: the user is the one a valid user token names; forged tokens name nobody and are not counted for their claimed user', async () => {
  const victim = 'victim';
  for (let i = 0; i < 5; i++)
    assert.deepEqual(await http(sgh.port, 'PUT', `/v1/demo/users/${victim}`, { name: 'x' }, victim, { key: 'sk_test_forged' }),
      { status: 403, errorCode: 'USER_SYNC_DISABLED' });
  await sleep(300);
  assert.equal(lines(sgh, 'budget_exhausted', victim).length, 0);
  const ws = await open(sgh.port, victim);
  assert.equal((await setUser(ws, 1, victim))[2].errorCode, 'USER_SYNC_DISABLED', 'the victim\'s budget is whole');
  ws.destroy();
});
