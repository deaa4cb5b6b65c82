// Refusal budgets (#18) with the real SDK (@talkjs/core), user_sync off. A user whose page
// keeps retrying a refused user.set is budgeted: past refusal_budget refusals in the window,
// its calls reject with TOO_MANY_REFUSED_CALLS, answered by syncgate from memory, while reads
// and messages go on; when the window ends the budget resets (one budget_reset line) and the
// change is decided again. With refusal_ban, the refusal that uses the budget up closes the
// SDK's socket 1008, the SDK's own reconnects are refused 403 USER_BANNED for the ban, and
// after it the SDK reconnects by itself: its queued read and a message go through.
//
// The SDK waits 5-15 s before it reconnects a closed socket (its ReconnectingSocket), so the
// ban here is 16 s: the first reconnect is always refused, and the test takes about 30 s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, rawExchange, parseResponses, sleep, waitFor } from '../lib/harness.mjs';
import { session, uniqueUser, settle, closes } from './sdk.mjs';

const apps = { budget: 'sk_test_budget', ban: 'sk_test_ban' };
const BAN_S = 16;
let be, sg;
before(async () => {
  be = await startBackend({ apps });
  sg = await startSyncgate(be.port,
    `[app:budget]\nuser_sync = off\nrefusal_budget = 3/3s\nsecret_key = ${apps.budget}\n` +
    `[app:ban]\nuser_sync = off\nrefusal_budget = 3/2s\nrefusal_ban = ${BAN_S}s\nsecret_key = ${apps.ban}\n`);
});
after(async () => { await sg?.stop(); await be?.stop(); setTimeout(() => process.exit(), 200).unref(); });

const host = () => `127.0.0.1:${sg.port}`;
const lines = (event, user) => sg.logs().filter((l) => l.event === event && l.user === user);

async function seeded(appId) {
  const me = uniqueUser('me'), conv = uniqueUser('cx');
  await be.seed({ appId, users: { [me]: { name: 'Me' } }, conversations: { [conv]: { subject: 'S', participants: { [me]: {} } } } });
  return { me, conv, s: session({ host: host(), appId, userId: me, key: apps[appId] }) };
}

test('a page that keeps retrying user.set is budgeted: TOO_MANY_REFUSED_CALLS, reads and messages go on, then the budget resets', { timeout: 60000 }, async () => {
  const { me, conv, s } = await seeded('budget');
  const t0 = Date.now();
  for (let i = 1; i <= 3; i++) {
    const r = await settle(() => s.currentUser.set({ name: `try ${i}` }));
    assert.ok(!r.ok);
    assert.match(r.message, /403 USER_SYNC_DISABLED/, `refusal ${i}`);
  }
  for (let i = 0; i < 3; i++) {
    const r = await settle(() => s.currentUser.set({ name: 'again' }));
    assert.ok(!r.ok);
    assert.match(r.message, /403 TOO_MANY_REFUSED_CALLS/);
    assert.match(r.message, /REST API/);
  }
  await waitFor(() => lines('budget_exhausted', me).length === 1);
  // a budget is about changes: reads and messages pass, on the same socket
  assert.equal((await s.user(me).get()).name, 'Me');
  const m = await s.conversation(conv).send('still here');
  assert.ok(m.id);
  assert.equal((await be.state('budget')).users[me].name, 'Me');
  assert.ok(!closes.some((c) => c.url.includes(`/realtime/${me}`) && c.code === 1008), 'no ban: the socket stays');
  // the window (3 s from the first refusal) ends: the change is decided again, one budget_reset
  await sleep(Math.max(0, 3300 - (Date.now() - t0)));
  const again = await settle(() => s.currentUser.set({ name: 'after the window' }));
  assert.match(again.message, /403 USER_SYNC_DISABLED/);
  await waitFor(() => lines('budget_reset', me).length === 1);
  await settle(() => s.currentUser.set({ name: 'once more' }));
  await sleep(300);
  assert.equal(lines('budget_reset', me).length, 1, 'one budget_reset line');
  assert.equal(lines('budget_exhausted', me).length, 1, 'one budget_exhausted line');
});

test('with refusal_ban: the socket is closed 1008, the SDK\'s reconnects are refused USER_BANNED, and after the ban it comes back', { timeout: 90000 }, async () => {
  const { me, conv, s } = await seeded('ban');
  for (let i = 1; i <= 3; i++) {
    const r = await settle(() => s.currentUser.set({ name: `try ${i}` }));
    assert.ok(!r.ok);
    assert.match(r.message, /403 USER_SYNC_DISABLED/, `refusal ${i}`);
  }
  const banned = Date.now();
  // the third refusal used the budget up: the SDK's socket is closed with 1008
  const closed = await waitFor(() => closes.find((c) => c.url.includes(`/realtime/${me}`) && c.code === 1008), { timeout: 3000 });
  assert.match(closed.reason, /banned/);
  assert.equal(lines('banned', me).length, 1);
  // a read asked meanwhile waits in the SDK's queue for its reconnect
  const read = s.user(me).get();
  // the SDK reconnects by itself (after 5-15 s): refused while banned
  const path = `/public_api/v1/ban/realtime/${me}`;
  const refused = await waitFor(() => sg.logs().find((l) => l.event === 'access' && l.request === `GET ${path}` && l.status === 403 && l.by === 'syncgate'), { timeout: 17000, every: 100 });
  assert.ok(refused);
  assert.ok(Date.now() - banned < BAN_S * 1000, 'refused within the ban');
  const raw = parseResponses((await rawExchange(sg.port,
    `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)).data)[0];
  if (Date.now() - banned < BAN_S * 1000 - 200) {
    assert.equal(raw.status, 403);
    assert.equal(JSON.parse(raw.body).errorCode, 'USER_BANNED');
  }
  // after the ban: the SDK's next reconnect is let through; the queued read and a message pass
  const snap = await Promise.race([read, sleep(45000).then(() => null)]);
  assert.ok(snap, 'the queued read resolved after the ban');
  assert.equal(snap.name, 'Me');
  assert.ok(Date.now() - banned >= BAN_S * 1000 - 100, 'not before the ban ended');
  const m = await s.conversation(conv).send('back');
  assert.ok(m.id);
  // (access lines are written every 250 ms)
  await waitFor(() => sg.logs().filter((l) => l.event === 'access' && l.request === `GET ${path}` && l.status === 101).length >= 2);
  // the ban's end reset the budget (one budget_reset line, logged at the reconnect): the change
  // is decided again, not refused from memory
  await waitFor(() => lines('budget_reset', me).length === 1);
  const again = await settle(() => s.currentUser.set({ name: 'after the ban' }));
  assert.match(again.message, /403 USER_SYNC_DISABLED/);
  assert.equal(lines('budget_reset', me).length, 1);
});
