// Locked fields (#18): user_fields_locked = role, custom.plan and participant_fields_locked =
// access, with both switches on. reject: the real SDK's user.set({name, role}) rejects with
// FIELD_LOCKED and the backend keeps the user as it was; strip: it resolves and the backend
// stores the name without the role. A participant batch mixing a locked and an allowed action
// (sent raw, as other clients may): reject answers the locked one and forwards the other;
// strip forwards both, the locked key removed, the other bytes as sent. Report mode changes
// nothing and logs what it would have done.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, sleep, waitFor, rawExchange, parseResponses, lockedAppsConf } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { session, uniqueUser, settle } from './sdk.mjs';

const LOCKS = 'user_fields_locked = role, custom.plan\nparticipant_fields_locked = access\n';
const apps = { rej: 'sk_test_rej', strip: 'sk_test_strip', rep: 'sk_test_rep' };
let be, sg;
before(async () => {
  be = await startBackend({ apps });
  sg = await startSyncgate(be.port, lockedAppsConf(LOCKS, apps) +
    '[route:legacy-user]\nmatch = PUT /legacy/{app}/users/{user}\nsync = user_set\nbody = json\n');
});
after(async () => { await sg?.stop(); await be?.stop(); setTimeout(() => process.exit(), 200).unref(); });

async function setUser(appId) {
  const me = uniqueUser('me');
  await be.seed({ appId, users: { [me]: { name: 'Me', custom: { plan: 'free', team: 'red' } } } });
  const s = session({ host: `127.0.0.1:${sg.port}`, appId, userId: me, key: apps[appId] });
  const r = await settle(() => s.currentUser.set({ name: 'Renamed', role: 'admin', custom: { plan: 'enterprise', team: 'blue' } }));
  await sleep(200);
  return { r, user: (await be.state(appId)).users[me], me };
}

test('reject: user.set({name, role}) rejects with FIELD_LOCKED naming the field; nothing changed', async () => {
  const { r, user } = await setUser('rej');
  assert.ok(!r.ok);
  assert.match(r.message, /FIELD_LOCKED/);
  assert.match(r.message, /'role'|'custom\.plan'/);
  assert.match(r.message, /REST API/);
  assert.equal(user.name, 'Me');
  assert.notEqual(user.role, 'admin');
});

test('strip: user.set({name, role, custom}) resolves; the backend stores it without role and custom.plan', async () => {
  const { r, user, me } = await setUser('strip');
  assert.ok(r.ok, r.message);
  assert.equal(user.name, 'Renamed');
  assert.notEqual(user.role, 'admin');
  assert.equal(user.custom.plan, 'free', 'custom.plan kept its value');
  assert.equal(user.custom.team, 'blue', 'the rest of custom changed');
  await waitFor(() => sg.logs().some((l) => l.event === 'strip' && l.app === 'strip' && l.user === me));
  const line = sg.logs().find((l) => l.event === 'strip' && l.user === me);
  assert.equal(line.fields, 'role,custom.plan');
  assert.equal(line.op, 'user-set');
});

test('report mode: nothing is stripped or refused; the log says what would have been', async () => {
  const { r, user, me } = await setUser('rep');
  assert.ok(r.ok, r.message);
  assert.equal(user.role, 'admin');
  assert.equal(user.custom.plan, 'enterprise');
  await waitFor(() => sg.logs().some((l) => l.event === 'would_strip' && l.user === me));
});

async function batch(appId) {
  const me = uniqueUser('me'), bob = uniqueUser('bob'), conv = uniqueUser('cx');
  await be.seed({ appId, users: { [me]: {}, [bob]: {} }, conversations: { [conv]: { subject: 's', participants: { [me]: {}, [bob]: {} } } } });
  const ws = await RawWs.open(sg.port, `/v1/${appId}/realtime/${me}`);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken(appId, me, apps[appId]) }, {}]));
  assert.equal((await ws.json(0))[1], 200);
  const seen = (await be.log()).length;
  const text = `[1,"POST","/conversations/${conv}/participants",{"actions":[` +
    `{"id":"${bob}","method":"PUT","params":{"access":"Read","notify":false}},` +
    `{"id":"${me}", "method":"PATCH", "params":{ "notify" : true }}]},{}]`;
  ws.sendText(text);
  const answer = await ws.json(1);
  await sleep(100);
  const fwd = (await be.log()).slice(seen).filter((e) => e.kind === 'ws' && e.appId === appId && e.user === me)
    .map((e) => Buffer.from(e.raw, 'base64').toString());
  ws.destroy();
  return { answer, fwd, state: (await be.state(appId)).conversations[conv], bob, me };
}

test('reject: a batch mixing a locked and an allowed action: the locked one answered FIELD_LOCKED, the other forwarded as sent', async () => {
  const { answer, fwd, state, bob } = await batch('rej');
  assert.equal(answer[1], 200);
  assert.equal(answer[2].responses.length, 2);
  assert.equal(answer[2].responses[0].status, 403);
  assert.equal(answer[2].responses[0].errorCode, 'FIELD_LOCKED');
  assert.equal(answer[2].responses[1].status, 200);
  assert.equal(fwd.length, 1);
  assert.ok(fwd[0].includes('{"id":"') && fwd[0].includes('"method":"PATCH", "params":{ "notify" : true }}'), fwd[0]);
  assert.ok(!fwd[0].includes('access'));
  assert.equal(state.participants[bob].access, 'ReadWrite');
});

test('strip: the same batch goes whole, access removed from the first action, every other byte as sent', async () => {
  const { answer, fwd, state, bob, me } = await batch('strip');
  assert.equal(answer[1], 200);
  assert.deepEqual(answer[2].responses.map((r) => r.status), [200, 200]);
  assert.equal(fwd.length, 1);
  const conv = JSON.parse(fwd[0])[2].split('/')[2];
  assert.equal(fwd[0], `[1,"POST","/conversations/${conv}/participants",{"actions":[` +
    `{"id":"${bob}","method":"PUT","params":{"notify":false}},` +
    `{"id":"${me}", "method":"PATCH", "params":{ "notify" : true }}]},{}]`);
  assert.equal(state.participants[bob].access, 'ReadWrite', 'access kept its value');
  assert.equal(state.participants[bob].notify, false, 'the allowed part of the change applied');
});

// A legacy HTTP client through a body = json route: the same rules on its JSON body.
const legacyPut = (appId, user, body, { chunked = false } = {}) => {
  const head = `PUT /legacy/${appId}/users/${user} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n`;
  const req = chunked
    ? `${head}Transfer-Encoding: chunked\r\n\r\n${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`
    : `${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  return rawExchange(sg.port, req, { idle: 1000 }).then((r) => parseResponses(r.data)[0]);
};

test('HTTP body route, reject: 403 FIELD_LOCKED, nothing forwarded', async () => {
  const u = uniqueUser('lg');
  await be.seed({ appId: 'rej', users: { [u]: { name: 'Old' } } });
  const r = await legacyPut('rej', u, '{"name":"New","role":"admin"}');
  assert.equal(r.status, 403);
  assert.equal(JSON.parse(r.body).errorCode, 'FIELD_LOCKED');
  assert.equal((await be.state('rej')).users[u].name, 'Old');
});

for (const chunked of [false, true]) {
  test(`HTTP body route, strip (${chunked ? 'chunked' : 'Content-Length'}): the backend gets the body without role, with its own Content-Length`, async () => {
    const u = uniqueUser('lg');
    await be.seed({ appId: 'strip', users: { [u]: { name: 'Old' } } });
    const seen = (await be.log()).length;
    const r = await legacyPut('strip', u, '{"name":"New", "role":"admin","custom":{"plan":"x","team":"t"}}', { chunked });
    assert.equal(r.status, 200, r.body.toString() + ' ' + JSON.stringify(sg.logs().filter((l) => l.event === 'bad_request').slice(-2)));
    const st = (await be.state('strip')).users[u];
    assert.equal(st.name, 'New');
    assert.equal(st.role, undefined);
    const got = (await be.log()).slice(seen).find((e) => e.kind === 'http' && e.url === `/legacy/strip/users/${u}`);
    const body = Buffer.from(got.body, 'base64').toString();
    assert.equal(body, '{"name":"New","custom":{"team":"t"}}');
    const cl = got.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-length');
    assert.equal(got.rawHeaders[cl + 1], String(body.length));
    assert.ok(!got.rawHeaders.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'transfer-encoding'));
  });
}
