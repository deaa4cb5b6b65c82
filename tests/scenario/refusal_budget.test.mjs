// Refusal budgets (#18): refusal_budget = 3/1m and refusal_ban = 2s. A user who keeps sending a
// refused change gets its three refusals as usual, then TOO_MANY_REFUSED_CALLS from memory
// (403, never 429, and never on /session/renew), is banned: the socket closes 1008 and a new
// upgrade is refused for the ban's length, then comes back. With 4 workers the budget is one
// count for the process. Report mode changes nothing and logs what it would have done.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, sleep, waitFor, rawExchange, parseResponses } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo';
let be, sg, sg4, sgr;
const APP = (extra = '') => `[app:demo]\nuser_sync = off\nrefusal_budget = 3/1m\nrefusal_ban = 2s\nsecret_key = ${KEY}\n${extra}`;
before(async () => {
  be = await startBackend({ apps: { demo: KEY } });
  sg = await startSyncgate(be.port, APP());
  sg4 = await startSyncgate(be.port, `workers = 4\n${APP()}`);
  sgr = await startSyncgate(be.port, APP('mode = report\n'));
});
after(async () => { await sg?.stop(); await sg4?.stop(); await sgr?.stop(); await be?.stop(); });

async function open(port, user) {
  const ws = await RawWs.open(port, `/v1/demo/realtime/${user}`);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', user, KEY) }, {}]));
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
