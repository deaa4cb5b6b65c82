// One call, two transports: a browser-credential call over plain HTTP (`/v1/{app}/...` with a
// user token) and the same call inside the realtime WebSocket are the same decision
// (protocol.md 7). So (a) the client gets the same answer, and the decision log line (`refuse`,
// `would_refuse`, `exists`; configuration.md "Log lines") has the same keys and the same
// values but for the transport's own (transport, socket, peer, user): an operator's query over
// the log finds both. And (b) the lookup cache is shared: a change forwarded on one transport
// drops the fact the other transport cached, so a createIfNotExists right after it sees the
// user or conversation that now exists (409, the SDK's success) instead of a stale 403.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startBackend, startSyncgate, parseResponses, freePort, waitFor } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo', REP_KEY = 'sk_test_rep';
const T = { timeout: 15000 };
const DECISIONS = new Set(['refuse', 'would_refuse', 'exists']);
const REQUIRED = ['event', 'transport', 'socket', 'peer', 'app', 'user', 'op', 'method', 'path', 'status', 'errorCode', 'rule', 'mode'];
const SAME = ['event', 'app', 'op', 'method', 'path', 'status', 'errorCode', 'rule', 'mode'];

let be, sg, adminPort;
const sockets = [];
before(async () => {
  be = await startBackend({ apps: { demo: KEY, rep: REP_KEY } });
  adminPort = await freePort();
  // one worker: one lookup cache for both transports; facts cached for longer than the file runs
  sg = await startSyncgate(be.port, `workers = 1\n[admin]\nlisten = 127.0.0.1:${adminPort}\n` +
    `[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n` +
    `[app:rep]\nuser_sync = off\nconversation_sync = off\nmode = report\nsecret_key = ${REP_KEY}\n` +
    '[limits]\nlookup_cache_ttl = 10m\nlookup_negative_ttl = 10m\n');
  for (const app of ['demo', 'rep'])
    await be.seed({ appId: app, users: { alice: { name: 'Alice' } }, conversations: { c1: { subject: 'One', participants: { alice: {} } } } });
});
after(async () => {
  for (const s of sockets) s.destroy();
  await sg?.stop();
  await be?.stop();
});

let n = 0;
const fresh = (what) => `${what}${++n}x${process.pid}`;
const keyOf = (app) => (app === 'rep' ? REP_KEY : KEY);

async function admin(app, body) {
  const r = await fetch(`http://127.0.0.1:${adminPort}/apps/${app}`, { method: 'PUT', body: JSON.stringify(body) });
  assert.equal(r.status, 200, `admin PUT /apps/${app} ${JSON.stringify(body)}: ${await r.text()}`);
}

// A realtime session of USER on APP, logged in with a user token.
async function session(app = 'demo', user = 'alice') {
  const ws = await RawWs.open(sg.port, `/v1/${app}/realtime/${user}?talkjs-core=1.12.0`);
  sockets.push(ws);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken(app, user, keyOf(app)) }, {}]));
  assert.equal((await ws.json(0))?.[1], 200);
  ws.seq = 1;
  return ws;
}
// One call on WS: resolves with the answer frame [seq, status, data].
async function call(ws, method, path, data = {}) {
  const seq = ws.seq++;
  ws.sendText(JSON.stringify([seq, method, path, data, {}]));
  const r = await ws.json(seq);
  assert.ok(r, `no answer to ${method} ${path}`);
  return r;
}

// One HTTP request with USER's user token (a browser credential) on a connection of its own:
// resolves with the first response once it is complete.
function http(method, target, body, { app = 'demo', user = 'alice' } = {}) {
  const b = Buffer.from(body === undefined ? '' : JSON.stringify(body));
  const bytes = Buffer.concat([Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${userToken(app, user, keyOf(app))}\r\n` +
    `Content-Type: application/json\r\n${b.length ? `Content-Length: ${b.length}\r\n` : ''}\r\n`, 'latin1'), b]);
  return new Promise((resolve) => {
    const s = net.connect(sg.port, '127.0.0.1'), chunks = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const r = parseResponses(Buffer.concat(chunks))[0];
      resolve(r ? { status: r.status, json: (() => { try { return JSON.parse(r.body.toString()); } catch { return null; } })() } : null);
    };
    const t = setTimeout(finish, 5000);
    s.on('data', (d) => {
      chunks.push(d);
      const r = parseResponses(Buffer.concat(chunks))[0];
      if (r && r.h('content-length') !== undefined && r.body.length >= Number(r.h('content-length'))) finish();
    });
    s.on('close', finish);
    s.on('error', finish);
    s.on('connect', () => s.write(bytes));
  });
}

// The decision line TRANSPORT logged after log line FROM.
const decisionLine = (transport, from) => waitFor(() => sg.logs().slice(from).find((l) => DECISIONS.has(l.event) && l.transport === transport), { timeout: 2000 }).catch(() => null);
const pick = (o, keys) => Object.fromEntries(keys.map((k) => [k, o?.[k]]));

// ============================================================================================
describe('(a) the same call refused on both transports: the same answer and the same decision line', () => {
  const cases = [
    { name: 'user sync off: PUT /users/alice (UserRef.set)', method: 'PUT', path: '/users/alice', body: { name: 'Mallory' },
      want: { event: 'refuse', status: 403, errorCode: 'USER_SYNC_DISABLED', op: 'user-set', mode: 'enforce' } },
    { name: 'user sync off: PUT /users/al%69ce (an escaped id, logged decoded and canonical)', method: 'PUT', path: '/users/al%69ce', logged: '/users/alice', body: { name: 'Mallory' },
      want: { event: 'refuse', status: 403, errorCode: 'USER_SYNC_DISABLED', op: 'user-set', mode: 'enforce' } },
    { name: 'user sync off: POST /users/alice, a user that exists (createIfNotExists)', method: 'POST', path: '/users/alice', body: { name: 'Alice' },
      want: { event: 'exists', status: 409, errorCode: 'USER_ALREADY_EXISTS', op: 'user-create', mode: 'enforce' } },
    { name: 'user sync off: POST of a new user (createIfNotExists)', method: 'POST', path: () => `/users/${fresh('new')}`, body: { name: 'N' },
      want: { event: 'refuse', status: 403, errorCode: 'USER_SYNC_DISABLED', op: 'user-create', mode: 'enforce' } },
    { name: 'conversation sync off: PUT /conversations/c1 (ConversationRef.set)', method: 'PUT', path: '/conversations/c1', body: { subject: 'Hijacked' },
      want: { event: 'refuse', status: 403, errorCode: 'UNAUTHORIZED_TO_EDIT', op: 'conversation-set', mode: 'enforce' } },
    { name: 'conversation sync off: POST /conversations/c1, a conversation that exists (createIfNotExists)', method: 'POST', path: '/conversations/c1', body: { subject: 'One' },
      want: { event: 'exists', status: 409, errorCode: 'CONVERSATION_ALREADY_EXISTS', op: 'conversation-create', mode: 'enforce' } },
    { name: 'report mode, user sync off: PUT /users/alice is forwarded on both and logged would_refuse', app: 'rep', method: 'PUT', path: '/users/alice', body: { name: 'Reported' },
      want: { event: 'would_refuse', status: 403, errorCode: 'USER_SYNC_DISABLED', op: 'user-set', mode: 'report' }, answer: 200 },
  ];
  for (const c of cases) {
    test(c.name, T, async () => {
      const app = c.app || 'demo', path = typeof c.path === 'function' ? c.path() : c.path;
      const logged = c.logged || path, answer = c.answer || c.want.status;
      // over the realtime socket
      const ws = await session(app);
      const w0 = sg.logs().length;
      const r = await call(ws, c.method, path, c.body);
      ws.destroy();
      const wsLine = await decisionLine('ws', w0);
      // over HTTP, with a browser credential
      const h0 = sg.logs().length;
      const h = await http(c.method, `/v1/${app}${path}`, c.body, { app });
      const httpLine = await decisionLine('http', h0);

      // what each client got
      assert.equal(r[1], answer, `realtime answer ${JSON.stringify(r)}`);
      assert.ok(h, 'an HTTP answer');
      assert.deepEqual([h.status, h.json?.errorCode], [r[1], r[2]?.errorCode], 'the HTTP client gets the answer the realtime client got');
      // the realtime line, as documented
      assert.ok(wsLine, 'a decision line for the realtime call');
      for (const k of REQUIRED) assert.ok(k in wsLine, `the realtime line has "${k}": ${JSON.stringify(wsLine)}`);
      assert.deepEqual(pick(wsLine, ['transport', 'event', 'app', 'method', 'path', 'status', 'errorCode', 'op', 'mode', 'user']),
        { transport: 'ws', event: c.want.event, app, method: c.method, path: logged, status: c.want.status, errorCode: c.want.errorCode, op: c.want.op, mode: c.want.mode, user: 'alice' });
      // the HTTP line: the same keys, the same values but for the transport's own
      assert.ok(httpLine, 'a decision line for the HTTP call');
      const differ = Object.fromEntries(SAME.filter((k) => httpLine[k] !== wsLine[k]).map((k) => [k, { http: httpLine[k], ws: wsLine[k] }]));
      assert.deepEqual({
        keysOnlyOnWs: Object.keys(wsLine).filter((k) => !(k in httpLine)),
        keysOnlyOnHttp: Object.keys(httpLine).filter((k) => !(k in wsLine)),
        differ,
      }, { keysOnlyOnWs: [], keysOnlyOnHttp: [], differ: {} }, `HTTP line ${JSON.stringify(httpLine)}\nrealtime line ${JSON.stringify(wsLine)}`);
      assert.equal(httpLine.transport, 'http');
      assert.equal(typeof httpLine.user, 'string', '"user" is a string ("" when not known)');
      assert.ok(httpLine.user === '' || httpLine.user === 'alice', `"user" on the HTTP line is "" or the token's user, not ${httpLine.user}`);
    });
  }
});

// ============================================================================================
describe('(b) a change forwarded on one transport drops the fact cached by the other', () => {
  // The backend's GETs of one user or conversation: syncgate's lookups.
  const lookups = async (kind, id) => (await be.log()).filter((e) => e.kind === 'http' && e.method === 'GET' && new RegExp(`/demo/${kind}/${id}$`).test(e.url)).length;
  const KINDS = {
    users: { sw: 'user_sync', refused: 'USER_SYNC_DISABLED', exists: 'USER_ALREADY_EXISTS', body: { name: 'Created' }, state: (s, id) => s.users[id] },
    conversations: { sw: 'conversation_sync', refused: 'CONVERSATION_SYNC_DISABLED', exists: 'CONVERSATION_ALREADY_EXISTS', body: { subject: 'Created' }, state: (s, id) => s.conversations[id] },
  };

  test('control: the negative fact is cached (one created behind syncgate\'s back still gets 403 until lookup_negative_ttl)', T, async () => {
    const uid = fresh('u');
    const ws = await session();
    assert.equal((await call(ws, 'POST', `/users/${uid}`, {}))[1], 403);
    await be.seed({ appId: 'demo', users: { [uid]: { name: 'Behind the back' } } });
    assert.equal((await call(ws, 'POST', `/users/${uid}`, {}))[1], 403, 'still the cached "no such user"');
    assert.equal(await lookups('users', uid), 1, 'looked up once');
    ws.destroy();
  });

  for (const [kind, k] of Object.entries(KINDS)) {
    test(`${kind}: refused over ws (negative fact cached), created over HTTP with a browser credential while ${k.sw} is on, then createIfNotExists over ws -> 409`, T, async () => {
      const id = fresh(kind[0]);
      const ws = await session();
      try {
        const first = await call(ws, 'POST', `/${kind}/${id}`, {});
        assert.deepEqual([first[1], first[2]?.errorCode], [403, k.refused], 'it does not exist yet: refused');
        await admin('demo', { [k.sw]: 'on' });
        const made = await http('POST', `/v1/demo/${kind}/${id}`, k.body);
        assert.equal(made?.status, 200, `created over HTTP: ${JSON.stringify(made)}`);
        assert.ok(k.state(await be.state('demo'), id), 'the backend created it');
        await admin('demo', { [k.sw]: 'off' });
        const again = await call(ws, 'POST', `/${kind}/${id}`, {});
        assert.deepEqual([again[1], again[2]?.errorCode], [409, k.exists],
          `it exists now: 409, the SDK's success (${await lookups(kind, id)} lookup(s) of it reached the backend)`);
      } finally {
        await admin('demo', { [k.sw]: 'off' });
        ws.destroy();
      }
    });

    test(`${kind}: refused over HTTP (negative fact cached), created over ws while ${k.sw} is on, then createIfNotExists over HTTP -> 409`, T, async () => {
      const id = fresh(kind[0]);
      const ws = await session();
      try {
        const first = await http('POST', `/v1/demo/${kind}/${id}`, k.body);
        assert.deepEqual([first?.status, first?.json?.errorCode], [403, k.refused], 'it does not exist yet: refused');
        await admin('demo', { [k.sw]: 'on' });
        const made = await call(ws, 'POST', `/${kind}/${id}`, k.body);
        assert.equal(made[1], 200, `created over ws: ${JSON.stringify(made)}`);
        assert.ok(k.state(await be.state('demo'), id), 'the backend created it');
        await admin('demo', { [k.sw]: 'off' });
        const again = await http('POST', `/v1/demo/${kind}/${id}`, k.body);
        assert.deepEqual([again?.status, again?.json?.errorCode], [409, k.exists],
          `it exists now: 409 (${await lookups(kind, id)} lookup(s) of it reached the backend)`);
      } finally {
        await admin('demo', { [k.sw]: 'off' });
        ws.destroy();
      }
    });
  }
});
