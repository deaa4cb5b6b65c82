// Facts at the edge (protocol.md 3.4, 4, 7): with the switches off, createIfNotExists and a
// participant's own notify change are decided on facts syncgate looks up over REST with the
// app's secret key, cached and dropped when a change passes through; a lookup that cannot be
// made fails closed; identity = require keeps everything but renew and ping from the backend
// until the socket's user has shown a valid token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startBackend, startSyncgate, rawExchange, parseResponses, sleep, waitFor, freePort } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { session, uniqueUser, settle } from './sdk.mjs';

const KEY = 'sk_test_facts', IKEY = 'sk_test_ident', NKEY = 'sk_test_nokey';
let be, sg;
before(async () => {
  be = await startBackend({ apps: { facts: KEY, ident: IKEY, nokey: NKEY } });
  sg = await startSyncgate(be.port, `[app:facts]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n` +
    `[app:ident]\nidentity = require\nsecret_key = ${IKEY}\n[app:nokey]\nuser_sync = off\nconversation_sync = off\n`);
});
after(async () => { await sg.stop(); await be.stop(); setTimeout(() => process.exit(), 200).unref(); });

const host = () => `127.0.0.1:${sg.port}`;
const wsFrames = async (user) => (await be.log()).filter((e) => e.kind === 'ws' && e.user === user).map((e) => Buffer.from(e.raw, 'base64').toString());
const lookups = async (path) => (await be.log()).filter((e) => e.kind === 'http' && e.method === 'GET' && e.url === path).length;

test('UserRef.createIfNotExists resolves for an existing user, rejects for a new one; one lookup per TTL', async () => {
  const me = uniqueUser('me'), known = uniqueUser('known');
  await be.seed({ appId: 'facts', users: { [me]: {}, [known]: { name: 'Known' } } });
  await be.clearLog();
  const s = session({ host: host(), appId: 'facts', userId: me, key: KEY });
  for (let i = 0; i < 5; i++) assert.ok((await settle(() => s.user(known).createIfNotExists({ name: 'X' }))).ok);
  const fresh = await settle(() => s.user(uniqueUser('new')).createIfNotExists({ name: 'N' }));
  assert.equal(fresh.ok, false);
  assert.match(fresh.message, /403 USER_SYNC_DISABLED/);
  assert.equal(await lookups(`/v1/facts/users/${known}`), 1, 'five calls, one lookup');
  assert.ok(!(await wsFrames(me)).some((f) => /"POST","\/users\//.test(f)), 'no user creation reached the backend');
  assert.equal((await be.state('facts')).users[known].name, 'Known');
});

test('concurrent calls needing the same fact share one lookup in flight', async () => {
  // no cache at all, and the backend stalled while the four calls arrive: only the in-flight
  // deduplication can make this one lookup
  const be2 = await startBackend({ apps: { facts: KEY } });
  const sg2 = await startSyncgate(be2.port, `[app:facts]\nuser_sync = off\nsecret_key = ${KEY}\n[limits]\nlookup_cache_ttl = 0ms\nlookup_negative_ttl = 0ms\n`);
  try {
    const users = ['a', 'b', 'c', 'd'];
    await be2.seed({ appId: 'facts', users: Object.fromEntries(['known', ...users].map((u) => [u, {}])) });
    const socks = [];
    for (const u of users) {
      const ws = await RawWs.open(sg2.port, `/v1/facts/realtime/${u}`);
      ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('facts', u, KEY) }, {}]));
      await ws.json(0);
      socks.push(ws);
    }
    await be2.clearLog();
    be2.proc.kill('SIGSTOP');
    socks.forEach((ws) => ws.sendText('[1,"POST","/users/known",{},{}]'));
    await sleep(300);
    be2.proc.kill('SIGCONT');
    const answers = await Promise.all(socks.map((ws) => ws.json(1)));
    assert.deepEqual(answers.map((a) => a[1]), [409, 409, 409, 409]);
    const n = (await be2.log()).filter((e) => e.kind === 'http' && e.url === '/v1/facts/users/known').length;
    assert.equal(n, 1, 'four calls, one lookup');
    socks.forEach((ws) => ws.destroy());
  } finally {
    be2.proc.kill('SIGCONT');
    await sg2.stop();
    await be2.stop();
  }
});

test('conversations: createIfNotExists and set({notify}) follow participation', async () => {
  const me = uniqueUser('me'), bob = uniqueUser('bob'), mine = uniqueUser('c'), theirs = uniqueUser('c');
  await be.seed({ appId: 'facts', users: { [me]: {}, [bob]: {} }, conversations: { [mine]: { participants: { [me]: {}, [bob]: {} } }, [theirs]: { participants: { [bob]: {} } } } });
  const s = session({ host: host(), appId: 'facts', userId: me, key: KEY });
  assert.ok((await settle(() => s.conversation(mine).createIfNotExists({ subject: 'x' }))).ok, 'participant: createIfNotExists resolves');
  const notMine = await settle(() => s.conversation(theirs).createIfNotExists());
  assert.equal(notMine.ok, false);
  assert.match(notMine.message, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  const created = await settle(() => s.conversation(uniqueUser('new')).createIfNotExists());
  assert.match(created.message, /CONVERSATION_SYNC_DISABLED/);
  assert.ok((await settle(() => s.conversation(mine).set({ notify: false }))).ok, 'own notify may change');
  assert.equal((await be.state('facts')).conversations[mine].participants[me].notify, false);
  const join = await settle(() => s.conversation(theirs).set({ notify: false }));
  assert.match(join.message, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  const subj = await settle(() => s.conversation(mine).set({ subject: 'new subject', notify: true }));
  assert.match(subj.message, /UNAUTHORIZED_TO_EDIT/);
  assert.equal((await be.state('facts')).conversations[mine].subject, undefined);
});

test('ParticipantRef: own notify passes; access, others, adds and deletes are refused', async () => {
  const me = uniqueUser('me'), bob = uniqueUser('bob'), cid = uniqueUser('c');
  await be.seed({ appId: 'facts', users: { [me]: {}, [bob]: {} }, conversations: { [cid]: { participants: { [me]: {}, [bob]: {} } } } });
  const s = session({ host: host(), appId: 'facts', userId: me, key: KEY });
  const c = s.conversation(cid);
  assert.ok((await settle(() => c.participant(me).set({ notify: 'MentionsOnly' }))).ok);
  assert.ok((await settle(() => c.participant(me).edit({ notify: true }))).ok);
  assert.match((await settle(() => c.participant(me).edit({ access: 'Read' }))).message, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  assert.match((await settle(() => c.participant(bob).set({ notify: false }))).message, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  assert.ok((await settle(() => c.participant(bob).createIfNotExists())).ok, 'already a participant: resolves');
  assert.match((await settle(() => c.participant(uniqueUser('new')).createIfNotExists())).message, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  assert.match((await settle(() => c.participant(bob).delete())).message, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  const st = (await be.state('facts')).conversations[cid].participants;
  assert.deepEqual(Object.keys(st).sort(), [me, bob].sort());
  assert.equal(st[me].notify, true);
  assert.equal(st[me].access, 'ReadWrite');
  // every participant frame that reached the backend changes nothing but my own notify
  for (const f of await wsFrames(me)) {
    const a = JSON.parse(f);
    if (a[2] !== `/conversations/${cid}/participants`) continue;
    for (const act of a[3].actions) {
      assert.equal(act.id, me);
      assert.deepEqual(Object.keys(act.params), ['notify']);
    }
  }
});

test('a REST change passing through drops the cached fact', async () => {
  const me = uniqueUser('me'), bob = uniqueUser('bob'), cid = uniqueUser('c');
  await be.seed({ appId: 'facts', users: { [me]: {}, [bob]: {} }, conversations: { [cid]: { participants: { [me]: {} } } } });
  const s = session({ host: host(), appId: 'facts', userId: me, key: KEY });
  assert.equal((await settle(() => s.conversation(cid).participant(bob).createIfNotExists())).ok, false);
  const res = await rawExchange(sg.port, `PUT /v1/facts/conversations/${cid}/participants/${bob} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`, { idle: 400 });
  assert.equal(parseResponses(res.data)[0].status, 200, 'server credential: passes');
  assert.ok((await settle(() => s.conversation(cid).participant(bob).createIfNotExists())).ok, 'the new fact is looked up again');
});

test('the fact cache is bounded: facts past their time go as new ones come, lookup_cache_memory caps the rest', async () => {
  const be2 = await startBackend({ apps: { facts: KEY } });
  const adminPort = await freePort(), tokenFile = path.join(fs.mkdtempSync('/tmp/sgtok-'), 'token');
  fs.writeFileSync(tokenFile, 'tok\n');
  const sg2 = await startSyncgate(be2.port, `workers = 1\n[admin]\nlisten = 127.0.0.1:${adminPort}\ntoken_file = ${tokenFile}\n` +
    `[app:facts]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n` +
    '[limits]\nlookup_cache_ttl = 10s\nlookup_negative_ttl = 2s\nlookup_cache_memory = 64k\n');
  const gauge = async (name) => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { Authorization: 'Bearer tok' } })).text();
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1]);
  };
  try {
    // 300 participants with 40-byte ids: about 17 KB per conversation fact
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`participant-${String(i).padStart(28, '0')}`, {}]));
    const convs = Array.from({ length: 10 }, (_, i) => `big${i}`);
    await be2.seed({ appId: 'facts', users: { me: {}, bob: {} }, conversations: Object.fromEntries(convs.map((c) => [c, { participants: { ...many, bob: {} } }])) });
    const ws = await RawWs.open(sg2.port, '/v1/facts/realtime/me');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('facts', 'me', KEY) }, {}]));
    await ws.json(0);
    let seq = 1;
    const call = async (text, status) => {
      const n = seq++;
      ws.sendText(`[${n},${text}]`);
      assert.equal((await ws.json(n))?.[1], status, text);
    };
    // 40 negative facts (kept 2 s), looked up at once
    await Promise.all(Array.from({ length: 40 }, (_, i) => call(`"POST","/users/new${i}",{},{}`, 403)));
    assert.equal(await gauge('syncgate_lookup_cache_facts'), 40);
    await sleep(2300);
    await call('"POST","/users/one-more",{},{}', 403);
    assert.equal(await gauge('syncgate_lookup_cache_facts'), 1, 'the 40 expired facts went when a new one came');
    for (const c of convs) await call(`"POST","/conversations/${c}/participants/bob",{},{}`, 409); // bob is in: a 17 KB fact each
    const facts = await gauge('syncgate_lookup_cache_facts'), bytes = await gauge('syncgate_lookup_cache_bytes');
    assert.ok(bytes <= 64 * 1024 && bytes > 3 * 16 * 1024, `the cache holds ${bytes} bytes (cap 64 KiB)`);
    assert.ok(facts >= 3 && facts <= 4, `${facts} facts: as many of the big ones as fit`);
    const looked = async (c) => (await be2.log()).filter((e) => e.kind === 'http' && e.method === 'GET' && e.url === `/v1/facts/conversations/${c}`).length;
    await call(`"POST","/conversations/${convs[9]}/participants/bob",{},{}`, 409);
    assert.equal(await looked(convs[9]), 1, 'the newest is still cached: no second lookup');
    await call(`"POST","/conversations/${convs[0]}/participants/bob",{},{}`, 409);
    assert.equal(await looked(convs[0]), 2, 'the oldest was dropped for room: looked up again');
    ws.destroy();
  } finally {
    await sg2.stop();
    await be2.stop();
  }
});

test('a lookup that cannot complete fails closed with a reason (backend stalled; no secret key)', async () => {
  const be2 = await startBackend({ apps: { facts: KEY } });
  const sg2 = await startSyncgate(be2.port, `[app:facts]\nuser_sync = off\nsecret_key = ${KEY}\n[limits]\nlookup_timeout = 400ms\n`);
  try {
    const ws = await RawWs.open(sg2.port, '/v1/facts/realtime/alice');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('facts', 'alice', KEY) }, {}]));
    assert.equal((await ws.json(0))[1], 200);
    be2.proc.kill('SIGSTOP');
    ws.sendText('[1,"POST","/users/newbie",{"name":"N"},{}]');
    const r = await ws.json(1, 3000);
    be2.proc.kill('SIGCONT');
    assert.equal(r[1], 403);
    assert.equal(r[2].errorCode, 'USER_SYNC_DISABLED');
    assert.match(r[2].reasons[0], /could not be verified/);
    ws.sendText('[2,"GET","/ping",{},{}]');
    assert.equal((await ws.json(2))[1], 200, 'the socket still works');
    ws.destroy();
  } finally {
    be2.proc.kill('SIGCONT');
    await sg2.stop();
    await be2.stop();
  }
  const ws = await RawWs.open(sg.port, '/v1/nokey/realtime/alice');
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('nokey', 'alice', NKEY) }, {}]));
  await ws.json(0);
  ws.sendText('[1,"POST","/conversations/c1",{},{}]');
  const r = await ws.json(1);
  assert.equal(r[1], 403);
  assert.match(r[2].reasons[0], /could not be verified/);
  ws.destroy();
});

test('while a call waits for a fact the socket keeps relaying, and every call gets one answer', async () => {
  const be2 = await startBackend({ apps: { facts: KEY } });
  const sg2 = await startSyncgate(be2.port, `[app:facts]\nuser_sync = off\nsecret_key = ${KEY}\n[limits]\nlookup_timeout = 1500ms\n`);
  try {
    await be2.seed({ appId: 'facts', users: { alice: {}, known: {} } });
    const ws = await RawWs.open(sg2.port, '/v1/facts/realtime/alice');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('facts', 'alice', KEY) }, {}]));
    await ws.json(0);
    ws.sendText('[1,"POST","/users/known",{},{}]');
    for (let i = 2; i < 12; i++) ws.sendText(`[${i},"GET","/ping",{},{}]`);
    const answers = [];
    for (let i = 1; i < 12; i++) answers.push(await ws.json(i));
    assert.deepEqual(answers.map((a) => a[1]), [409, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]);
    await sleep(200);
    assert.equal(ws.frames.filter((f) => f.opcode === 1 && !f.text.includes('PUBLISH')).length, 0, 'no second answer for any call');
    ws.destroy();
  } finally {
    await sg2.stop();
    await be2.stop();
  }
});

test('identity = require: a forged or other user\'s token gets 401 and nothing but ping reaches the backend', async () => {
  for (const [name, token] of [['forged', userToken('ident', 'alice', 'sk_test_wrong')], ['other user', userToken('ident', 'bob', IKEY)], ['none', '']]) {
    await be.clearLog();
    const ws = await RawWs.open(sg.port, '/v1/ident/realtime/alice');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token }, {}]));
    const r = await ws.json(0);
    assert.equal(r[1], 401, name);
    assert.equal(r[2].errorCode, 'INVALID_TOKEN');
    ws.sendText('[1,"GET","/users",{"ids":["alice"]},{}]');
    ws.sendText('[2,"PUT","/users/alice",{"name":"x"},{}]');
    ws.sendText('[3,"GET","/ping",{},{}]');
    assert.equal((await ws.json(1))[1], 401);
    assert.equal((await ws.json(2))[2].errorCode, 'NOT_AUTHENTICATED');
    assert.equal((await ws.json(3))[1], 200);
    assert.deepEqual(await wsFrames('alice'), ['[3,"GET","/ping",{},{}]'], name);
    ws.destroy();
  }
  assert.ok(sg.logs().some((l) => l.event === 'identity' && l.result === 'invalid' && l.user === 'alice'));
  // a valid token opens the socket
  const ws = await RawWs.open(sg.port, '/v1/ident/realtime/alice');
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('ident', 'alice', IKEY) }, {}]));
  assert.equal((await ws.json(0))[1], 200);
  ws.sendText('[1,"PUT","/users/alice",{"name":"A"},{}]');
  assert.equal((await ws.json(1))[1], 200);
  ws.destroy();
});

test('identity = require: a bad signature at U3 gets 401 from syncgate; a good one gets a boken', async () => {
  await be.clearLog();
  const bad = await rawExchange(sg.port, `GET /api/v0/ident/bokens/alice?signature=${'ab'.repeat(32)} HTTP/1.1\r\nHost: a\r\n\r\n`, { idle: 300 });
  assert.equal(parseResponses(bad.data)[0].status, 401);
  assert.equal((await be.log()).filter((e) => e.kind === 'http').length, 0);
  const sig = crypto.createHmac('sha256', IKEY).update('alice').digest('hex').toUpperCase();
  const good = await rawExchange(sg.port, `GET /api/v0/ident/bokens/alice?signature=${sig} HTTP/1.1\r\nHost: a\r\n\r\n`, { idle: 300 });
  const r = parseResponses(good.data)[0];
  assert.equal(r.status, 200);
  assert.ok(JSON.parse(r.body).boken);
  // and the SDK's signature flow works end to end through syncgate
  const s = session({ host: host(), appId: 'ident', userId: uniqueUser('sig'), key: IKEY, auth: 'signature' });
  assert.ok((await settle(() => s.currentUser.set({ name: 'Signed' }))).ok);
});

test('identity = verify: a forged token is logged as invalid but not enforced', async () => {
  const be2 = await startBackend({ apps: { ver: 'sk_test_ver' } });
  const sg2 = await startSyncgate(be2.port, '[app:ver]\nidentity = verify\nsecret_key = sk_test_ver\n');
  try {
    const ws = await RawWs.open(sg2.port, '/v1/ver/realtime/alice');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('ver', 'alice', 'sk_test_forged') }, {}]));
    assert.equal((await ws.json(0))[1], 401, 'the backend itself refused it: syncgate forwarded the renew');
    await waitFor(() => sg2.logs().some((l) => l.event === 'identity'));
    const line = sg2.logs().find((l) => l.event === 'identity');
    assert.deepEqual([line.result, line.why, line.mode], ['invalid', 'bad signature', 'verify']);
    ws.destroy();
  } finally {
    await sg2.stop();
    await be2.stop();
  }
});
