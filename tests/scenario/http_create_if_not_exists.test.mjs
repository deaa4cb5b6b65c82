// createIfNotExists over plain HTTP with a browser credential (protocol.md 7.1, 7.2, 7.4, 7.5):
// `POST /v1/{app}/users/{uid}` or `/conversations/{cid}` carrying a user token is browser
// sync, so the switches decide. With the switch off, syncgate answers it itself and forwards
// nothing: 409 *_ALREADY_EXISTS when the user or conversation is already in the backend (the
// SDK takes that as success), 403 *_SYNC_DISABLED when it is not, 403 when the fact cannot be
// looked up (never a 5xx). The answer holds however the request arrives (body in a later
// write, a request pipelined after it), and in report mode the call goes through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startBackend, startSyncgate, parseResponses, freePort, sleep } from '../lib/harness.mjs';
import { userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo', NOKEY_KEY = 'sk_test_nokey', REP_KEY = 'sk_test_rep';
const APPS = `[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n` +
  '[app:nokey]\nuser_sync = off\nconversation_sync = off\n' + // no secret_key: no lookup possible
  `[app:rep]\nuser_sync = off\nconversation_sync = off\nmode = report\nsecret_key = ${REP_KEY}\n`;
const UT = userToken('demo', 'alice', KEY); // a user token: a browser credential, not a server one
const T = { timeout: 15000 };

let be, sg;
const cleanup = [];
before(async () => {
  be = await startBackend({ apps: { demo: KEY, nokey: NOKEY_KEY, rep: REP_KEY } });
  sg = await startSyncgate(be.port, APPS);
});
after(async () => {
  for (const f of cleanup.reverse()) await f();
  await sg?.stop();
  await be?.stop();
});

let n = 0;
const fresh = (what) => `${what}${++n}_${process.pid}`;

// An HTTP/1.1 request with a JSON body and a bearer credential: [head, body] as two Buffers.
function request(method, target, { body = '{"name":"X"}', auth = UT } = {}) {
  const b = Buffer.from(body);
  const head = `${method} ${target} HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${auth}\r\n` +
    `Content-Type: application/json\r\n${b.length ? `Content-Length: ${b.length}\r\n` : ''}\r\n`;
  return [Buffer.from(head, 'latin1'), b];
}
const whole = (method, target, opts) => Buffer.concat(request(method, target, opts));

// How many complete responses (Content-Length framed, as both syncgate's and the backend's
// are) BUF holds.
function complete(buf) {
  const rs = parseResponses(buf);
  let k = 0;
  for (const r of rs) {
    const cl = r.h('content-length');
    if (cl !== undefined && r.body.length < Number(cl)) break;
    k++;
  }
  return k;
}

// Writes PIECES on one connection, PAUSE ms apart; resolves with the responses once WANT are
// complete, the peer closed, or TIMEOUT ms passed.
function converse(port, pieces, { want = 1, pause = 0, timeout = 5000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1'), chunks = [];
    let closed = false, done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, closed, rs: parseResponses(data) });
    };
    const t = setTimeout(finish, timeout);
    s.on('data', (d) => { chunks.push(d); if (complete(Buffer.concat(chunks)) >= want) setTimeout(finish, 30); });
    s.on('end', () => { closed = true; finish(); });
    s.on('close', () => { closed = true; finish(); });
    s.on('error', () => { closed = true; finish(); });
    s.on('connect', async () => {
      for (const [i, p] of pieces.entries()) {
        if (s.destroyed) break;
        s.write(p);
        if (pause && i < pieces.length - 1) await sleep(pause);
      }
    });
  });
}

const show = (res) => res.data.toString('latin1').slice(0, 400).replace(/\r\n/g, '\\r\\n');

// syncgate's own answer: STATUS, JSON {"errorCode": CODE, "reasons": [...]} and nothing else,
// the reasons naming the app.
function assertOwnAnswer(res, r, status, code, app = 'demo') {
  assert.ok(r, `no answer: ${show(res)}`);
  assert.equal(r.status, status, show(res));
  assert.match(r.h('content-type') || '', /application\/json/);
  const j = JSON.parse(r.body.toString());
  assert.deepEqual(Object.keys(j).sort(), ['errorCode', 'reasons'], show(res));
  assert.equal(j.errorCode, code);
  assert.ok(Array.isArray(j.reasons) && j.reasons.length > 0 && j.reasons.every((x) => typeof x === 'string'), 'reasons');
  assert.match(j.reasons[0], new RegExp(`\\b${app}\\b`), 'the reason names the app');
  return j;
}

// Requests other than reads (syncgate's own lookups are GETs) that reached the backend.
const changesAtBackend = async () => (await be.log()).filter((e) => e.kind === 'http' && e.method !== 'GET' && e.method !== 'HEAD').map((e) => `${e.method} ${e.url}`);

// A user made in the backend directly, through its REST API with the secret key.
async function existingUser(app = 'demo', key = KEY) {
  const uid = fresh('u');
  const r = await fetch(`http://127.0.0.1:${be.port}/v1/${app}/users/${uid}`, { method: 'PUT', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: '{"name":"Existing"}' });
  assert.equal(r.status, 200);
  return uid;
}
// A conversation made through syncgate with the secret key: a server credential passes.
async function existingConversation() {
  const cid = fresh('c');
  const res = await converse(sg.port, [whole('PUT', `/v1/demo/conversations/${cid}`, { body: '{"subject":"Existing"}', auth: KEY })]);
  assert.equal(res.rs[0]?.status, 200, show(res));
  return cid;
}
const user = async (app, uid) => (await be.state(app)).users[uid];
const conversation = async (app, cid) => (await be.state(app)).conversations[cid];

for (const base of ['/v1', '/public_api/v1']) {
  test(`user sync off, ${base}: POST ${base}/demo/users/{uid} of a user that exists -> 409 USER_ALREADY_EXISTS from syncgate, nothing forwarded`, T, async () => {
    const uid = await existingUser();
    await be.clearLog();
    const res = await converse(sg.port, [whole('POST', `${base}/demo/users/${uid}`)]);
    assertOwnAnswer(res, res.rs[0], 409, 'USER_ALREADY_EXISTS');
    assert.deepEqual(await changesAtBackend(), [], 'the backend received no change');
    assert.equal((await user('demo', uid)).name, 'Existing', 'the user is as it was');
  });

  test(`user sync off, ${base}: POST ${base}/demo/users/{uid} of a new user -> 403 USER_SYNC_DISABLED, nothing forwarded`, T, async () => {
    const uid = fresh('u');
    await be.clearLog();
    const res = await converse(sg.port, [whole('POST', `${base}/demo/users/${uid}`)]);
    const j = assertOwnAnswer(res, res.rs[0], 403, 'USER_SYNC_DISABLED');
    assert.match(j.reasons[0], /\buser\b/, 'the reason names the switch');
    assert.match(j.reasons[0], /REST API/, 'and the way to make the change');
    assert.deepEqual(await changesAtBackend(), []);
    assert.equal(await user('demo', uid), undefined, 'no user was created');
  });
}

test('conversation sync off: POST /v1/demo/conversations/{cid} of a conversation that exists -> 409 CONVERSATION_ALREADY_EXISTS, nothing forwarded', T, async () => {
  const cid = await existingConversation();
  await be.clearLog();
  const res = await converse(sg.port, [whole('POST', `/v1/demo/conversations/${cid}`, { body: '{"subject":"Mine now"}' })]);
  assertOwnAnswer(res, res.rs[0], 409, 'CONVERSATION_ALREADY_EXISTS');
  assert.deepEqual(await changesAtBackend(), []);
  assert.equal((await conversation('demo', cid)).subject, 'Existing', 'the conversation is as it was');
});

test('conversation sync off: POST /v1/demo/conversations/{cid} of a new conversation -> 403 CONVERSATION_SYNC_DISABLED, nothing forwarded', T, async () => {
  const cid = fresh('c');
  await be.clearLog();
  const res = await converse(sg.port, [whole('POST', `/v1/demo/conversations/${cid}`, { body: '{"subject":"New"}' })]);
  const j = assertOwnAnswer(res, res.rs[0], 403, 'CONVERSATION_SYNC_DISABLED');
  assert.match(j.reasons[0], /\bconversation\b/, 'the reason names the switch');
  assert.match(j.reasons[0], /REST API/, 'and the way to make the change');
  assert.deepEqual(await changesAtBackend(), []);
  assert.equal(await conversation('demo', cid), undefined, 'no conversation was created');
});

test('lookup impossible (no secret_key for the app): 403 saying the fact could not be verified, even for a user that exists; nothing forwarded', T, async () => {
  const uid = await existingUser('nokey', NOKEY_KEY), cid = fresh('c');
  await be.seed({ appId: 'nokey', conversations: { [cid]: { subject: 'Existing' } } });
  await be.clearLog();
  const tok = userToken('nokey', 'alice', NOKEY_KEY);
  for (const [target, code] of [[`/v1/nokey/users/${uid}`, 'USER_SYNC_DISABLED'], [`/v1/nokey/users/${fresh('u')}`, 'USER_SYNC_DISABLED'],
    [`/v1/nokey/conversations/${cid}`, 'CONVERSATION_SYNC_DISABLED']]) {
    const res = await converse(sg.port, [whole('POST', target, { auth: tok })]);
    const j = assertOwnAnswer(res, res.rs[0], 403, code, 'nokey');
    assert.match(j.reasons[0], /could not be (verified|checked)/, target);
  }
  assert.deepEqual(await changesAtBackend(), []);
  assert.equal((await user('nokey', uid)).name, 'Existing');
});

test('lookup failing (backend stalled past lookup_timeout): 403, never a 5xx, and nothing forwarded', T, async () => {
  const sg2 = await startSyncgate(be.port, `${APPS}[limits]\nlookup_timeout = 400ms\n`);
  cleanup.push(() => sg2.stop());
  const uid = await existingUser(), cid = await existingConversation();
  await be.clearLog();
  be.proc.kill('SIGSTOP');
  let res;
  try {
    res = await Promise.all([
      converse(sg2.port, [whole('POST', `/v1/demo/users/${uid}`)]),
      converse(sg2.port, [whole('POST', `/v1/demo/users/${fresh('u')}`)]),
      converse(sg2.port, [whole('POST', `/v1/demo/conversations/${cid}`)]),
    ]);
  } finally {
    be.proc.kill('SIGCONT');
  }
  for (const [r, code] of [[res[0], 'USER_SYNC_DISABLED'], [res[1], 'USER_SYNC_DISABLED'], [res[2], 'CONVERSATION_SYNC_DISABLED']]) {
    const j = assertOwnAnswer(r, r.rs[0], 403, code);
    assert.match(j.reasons[0], /could not be (verified|checked)/);
  }
  await sleep(300); // anything forwarded while the backend was stopped is read now
  assert.deepEqual(await changesAtBackend(), []);
  assert.equal((await user('demo', uid)).name, 'Existing');
});

test('lookup failing (backend unreachable): 403, not 502', T, async () => {
  const sg3 = await startSyncgate(await freePort(), APPS);
  cleanup.push(() => sg3.stop());
  for (const [target, code] of [[`/v1/demo/users/${fresh('u')}`, 'USER_SYNC_DISABLED'], [`/v1/demo/conversations/${fresh('c')}`, 'CONVERSATION_SYNC_DISABLED']]) {
    const res = await converse(sg3.port, [whole('POST', target)]);
    const j = assertOwnAnswer(res, res.rs[0], 403, code);
    assert.match(j.reasons[0], /could not be (verified|checked)/);
  }
});

for (const [kind, expect] of [['an existing user', [409, 'USER_ALREADY_EXISTS']], ['a new user', [403, 'USER_SYNC_DISABLED']]]) {
  test(`the body in a second write 100 ms after the head, POST of ${kind} -> ${expect.join(' ')}, nothing forwarded`, T, async () => {
    const uid = kind === 'a new user' ? fresh('u') : await existingUser();
    await be.clearLog();
    const res = await converse(sg.port, request('POST', `/v1/demo/users/${uid}`), { pause: 100 });
    assertOwnAnswer(res, res.rs[0], ...expect);
    assert.deepEqual(await changesAtBackend(), []);
    if (kind === 'a new user') assert.equal(await user('demo', uid), undefined);
  });
}

for (const [kind, expect] of [['an existing user', [409, 'USER_ALREADY_EXISTS']], ['a new user', [403, 'USER_SYNC_DISABLED']]]) {
  test(`keep-alive: POST of ${kind} (body 100 ms after the head) with a GET pipelined behind it -> both answered, in order, on one connection`, T, async () => {
    const uid = kind === 'a new user' ? fresh('u') : await existingUser();
    const reader = await existingUser();
    await be.clearLog();
    const [head, body] = request('POST', `/v1/demo/users/${uid}`);
    const second = whole('GET', `/v1/demo/users/${reader}`, { body: '' });
    const res = await converse(sg.port, [head, Buffer.concat([body, second])], { want: 2, pause: 100 });
    assert.equal(res.rs.length, 2, `two answers on the connection: ${show(res)}`);
    assertOwnAnswer(res, res.rs[0], ...expect);
    assert.equal(res.rs[1].status, 200, 'the pipelined read was answered by the backend');
    assert.equal(JSON.parse(res.rs[1].body.toString()).id, reader, 'the second answer is the read\'s');
    assert.deepEqual(await changesAtBackend(), []);
  });
}

test('report mode: the same POSTs are forwarded and the backend answers (a would_refuse line is logged)', T, async () => {
  const tok = userToken('rep', 'alice', REP_KEY);
  const uid = fresh('u'), old = await existingUser('rep', REP_KEY);
  await be.clearLog();
  for (const id of [uid, old]) {
    const res = await converse(sg.port, [whole('POST', `/v1/rep/users/${id}`, { auth: tok, body: '{"name":"Reported"}' })]);
    assert.equal(res.rs[0]?.status, 200, show(res));
    assert.deepEqual(JSON.parse(res.rs[0].body.toString()), {}, 'the backend\'s answer');
  }
  assert.deepEqual(await changesAtBackend(), [`POST /v1/rep/users/${uid}`, `POST /v1/rep/users/${old}`]);
  assert.equal((await user('rep', uid)).name, 'Reported', 'the backend created the user');
  assert.ok(sg.logs().some((l) => l.event === 'would_refuse' && l.transport === 'http' && l.app === 'rep' && l.errorCode === 'USER_SYNC_DISABLED' && l.mode === 'report'),
    'the refusal it would have made is logged');
});

test('pipelined creates that need the same fact are each answered, in order, on one connection', T, async () => {
  // The second asks for the fact while the first one's answer is being handed out: it must
  // not join a lookup whose waiters were already called (it would never be answered).
  const uid = await existingUser(), nu = fresh('u');
  await be.clearLog();
  const pieces = [whole('POST', `/v1/demo/users/${uid}`), whole('POST', `/v1/demo/users/${uid}`),
    whole('POST', `/v1/demo/users/${nu}`), whole('POST', `/v1/demo/users/${nu}`)];
  const res = await converse(sg.port, [Buffer.concat(pieces)], { want: 4 });
  assert.equal(res.rs.length, 4, show(res));
  assertOwnAnswer(res, res.rs[0], 409, 'USER_ALREADY_EXISTS');
  assertOwnAnswer(res, res.rs[1], 409, 'USER_ALREADY_EXISTS');
  assertOwnAnswer(res, res.rs[2], 403, 'USER_SYNC_DISABLED');
  assertOwnAnswer(res, res.rs[3], 403, 'USER_SYNC_DISABLED');
  assert.equal(res.closed, false, 'the connection stays open');
  assert.deepEqual(await changesAtBackend(), []);
});

test('bodies of refused calls on a kept-alive connection do not count against the next request', T, async () => {
  const small = await startSyncgate(be.port, `${APPS}[limits]\nbody = 2k\n`);
  cleanup.push(() => small.stop());
  const reader = await existingUser();
  const big = `{"name":"${'x'.repeat(900)}"}`;
  const pieces = [];
  for (let i = 0; i < 5; i++) pieces.push(whole('POST', `/v1/demo/users/${fresh('u')}`, { body: big }));
  pieces.push(whole('GET', `/v1/demo/users/${reader}`, { body: '' }));
  const res = await converse(small.port, [Buffer.concat(pieces)], { want: 6 });
  assert.equal(res.rs.length, 6, show(res));
  for (let i = 0; i < 5; i++) assertOwnAnswer(res, res.rs[i], 403, 'USER_SYNC_DISABLED');
  assert.equal(res.rs[5].status, 200, 'the read after them is relayed, not refused as too large');
});
