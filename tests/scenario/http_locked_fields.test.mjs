// Locked fields (#18) on the REST-shaped browser changes of the built-in routes, with no
// operator route: `PUT /v1/{app}/users/{id}`, conversation PUT / POST and participant PUT with
// a user token (a browser credential) and a JSON body. When the app locks fields of the change
// its body is read whole (Content-Length or chunked, decoded) and parsed strictly before the
// decision: reject answers 403 FIELD_LOCKED and forwards nothing; strip forwards the body
// without the locked keys under a Content-Length of its own; report mode forwards it as sent
// and logs what would have been. A body that is not strict JSON is refused 400 with nothing
// forwarded, and the connection goes on. An app with no lists is relayed byte for byte, as
// before. Checked in the reference backend's stored state and in what it received.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startBackend, startSyncgate, parseResponses, waitFor, lockedAppsConf } from '../lib/harness.mjs';
import { userToken } from '../lib/rawws.mjs';

const LOCKS = 'user_fields_locked = role, custom.plan\nconversation_fields_locked = custom.tier\n' +
  'participant_fields_locked = access\n';
const apps = { rej: 'sk_test_rej', strip: 'sk_test_strip', rep: 'sk_test_rep', repr: 'sk_test_repr', open: 'sk_test_open' };
const T = { timeout: 20000 };
let be, sg;
before(async () => {
  be = await startBackend({ apps });
  sg = await startSyncgate(be.port, lockedAppsConf(LOCKS, apps) +
    `[app:repr]\n${LOCKS}mode = report\nsecret_key = ${apps.repr}\n` +
    `[app:open]\nsecret_key = ${apps.open}\n`);
});
after(async () => { await sg?.stop(); await be?.stop(); });

let n = 0;
const fresh = (what) => `${what}${++n}x${process.pid}`;

// The bytes of one browser request: USER's user token for APP, a JSON body (a string, sent as
// written) framed by Content-Length, or chunked in CHUNKS pieces.
function request(method, target, body, { app, user = 'alice', chunked = 0, extra = '' }) {
  let head = `${method} ${target} HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${userToken(app, user, apps[app])}\r\n` +
    `Content-Type: application/json\r\n${extra}`;
  const b = Buffer.from(body);
  if (!chunked) return Buffer.concat([Buffer.from(`${head}Content-Length: ${b.length}\r\n\r\n`), b]);
  head += 'Transfer-Encoding: chunked\r\n\r\n';
  const parts = [], step = Math.ceil(b.length / chunked);
  for (let i = 0; i < b.length; i += step) {
    const p = b.subarray(i, i + step);
    parts.push(Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n'));
  }
  return Buffer.concat([Buffer.from(head), ...parts, Buffer.from('0\r\n\r\n')]);
}

// Writes the requests one after the other on one connection, each once the answer to the one
// before is complete; resolves with the answers and whether the connection was closed.
function converse(pieces, { timeout = 5000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(sg.port, '127.0.0.1'), chunks = [];
    let sent = 0, closed = false, done = false;
    const complete = () => {
      const rs = parseResponses(Buffer.concat(chunks));
      return rs.filter((r) => r.h('content-length') === undefined || r.body.length >= Number(r.h('content-length'))).length;
    };
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ rs: parseResponses(Buffer.concat(chunks)), closed });
    };
    const t = setTimeout(finish, timeout);
    s.on('data', (d) => {
      chunks.push(d);
      const k = complete();
      if (k >= pieces.length) finish();
      else if (k === sent) s.write(pieces[sent++]);
    });
    s.on('close', () => { closed = true; finish(); });
    s.on('error', () => { closed = true; finish(); });
    s.on('connect', () => s.write(pieces[sent++]));
  });
}
const one = async (bytes) => (await converse([bytes])).rs[0];
const json = (r) => JSON.parse(r.body.toString());

// What the backend received for URL since log entry FROM (bodies decoded from their framing).
const received = async (from, url) => (await be.log()).slice(from).filter((e) => e.kind === 'http' && e.url === url);
const header = (e, name) => { const i = e.rawHeaders.findIndex((h, k) => k % 2 === 0 && h.toLowerCase() === name); return i < 0 ? undefined : e.rawHeaders[i + 1]; };

async function seedUser(app, fields = { name: 'Old', role: 'member', custom: { plan: 'free', team: 'red' } }) {
  const u = fresh('u');
  await be.seed({ appId: app, users: { [u]: fields } });
  return u;
}
async function seedConv(app, user) {
  const c = fresh('c');
  await be.seed({ appId: app, users: { [user]: {} }, conversations: { [c]: { subject: 'S', participants: { [user]: { access: 'ReadWrite', notify: true } } } } });
  return c;
}

test('reject: a user PUT with role is refused 403 FIELD_LOCKED naming it; nothing reaches the backend', T, async () => {
  const u = await seedUser('rej'), url = `/v1/rej/users/${u}`, from = (await be.log()).length;
  const r = await one(request('PUT', url, '{"name":"New","role":"admin"}', { app: 'rej', user: u }));
  assert.equal(r.status, 403);
  assert.equal(json(r).errorCode, 'FIELD_LOCKED');
  assert.match(json(r).reasons[0], /'role'/);
  assert.match(json(r).reasons[0], /REST API/);
  assert.deepEqual(await received(from, url), []);
  const st = (await be.state('rej')).users[u];
  assert.equal(st.name, 'Old');
  assert.equal(st.role, 'member');
  await waitFor(() => sg.logs().some((l) => l.event === 'refuse' && l.errorCode === 'FIELD_LOCKED' && l.transport === 'http' && l.path === `/users/${u}`));
});

test('reject: custom.plan nested in custom is refused; custom without it passes and is stored', T, async () => {
  const u = await seedUser('rej'), url = `/v1/rej/users/${u}`;
  const r = await one(request('PUT', url, '{"custom":{"team":"blue","plan":"enterprise"}}', { app: 'rej', user: u }));
  assert.equal(r.status, 403);
  assert.match(json(r).reasons[0], /'custom\.plan'/);
  const ok = await one(request('PUT', url, '{"name":"New","custom":{"team":"blue"}}', { app: 'rej', user: u, chunked: 3 }));
  assert.equal(ok.status, 200, ok.body.toString());
  const st = (await be.state('rej')).users[u];
  assert.deepEqual([st.name, st.custom.plan, st.custom.team], ['New', 'free', 'blue']);
});

for (const chunked of [0, 3]) {
  test(`strip (${chunked ? 'chunked' : 'Content-Length'}): the backend gets the body without role and custom.plan, under its own Content-Length`, T, async () => {
    const u = await seedUser('strip'), url = `/v1/strip/users/${u}`, from = (await be.log()).length;
    const r = await one(request('PUT', url, '{"name":"New", "role":"admin","custom":{"plan":"x","team":"t"}}', { app: 'strip', user: u, chunked }));
    assert.equal(r.status, 200, r.body.toString());
    const [got] = await received(from, url);
    const body = Buffer.from(got.body, 'base64').toString();
    assert.equal(body, '{"name":"New","custom":{"team":"t"}}');
    assert.equal(header(got, 'content-length'), String(Buffer.byteLength(body)));
    assert.equal(header(got, 'transfer-encoding'), undefined);
    const st = (await be.state('strip')).users[u];
    assert.deepEqual([st.name, st.role, st.custom.plan, st.custom.team], ['New', 'member', 'free', 't']);
    await waitFor(() => sg.logs().some((l) => l.event === 'strip' && l.transport === 'http' && l.path === `/users/${u}`));
    const line = sg.logs().find((l) => l.event === 'strip' && l.path === `/users/${u}`);
    assert.equal(line.fields, 'role,custom.plan');
    assert.equal(line.op, 'user-set');
  });
}

test('participant PUT with access locked: reject refuses it; strip stores notify and keeps access', T, async () => {
  for (const app of ['rej', 'strip']) {
    const me = fresh('me'), c = await seedConv(app, me), url = `/v1/${app}/conversations/${c}/participants/${me}`;
    const r = await one(request('PUT', url, '{"access":"Read","notify":false}', { app, user: me }));
    const p = (await be.state(app)).conversations[c].participants[me];
    if (app === 'rej') {
      assert.equal(r.status, 403);
      assert.equal(json(r).errorCode, 'FIELD_LOCKED');
      assert.match(json(r).reasons[0], /'access' of participants/);
      assert.deepEqual([p.access, p.notify], ['ReadWrite', true]);
    } else {
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual([p.access, p.notify], ['ReadWrite', false]);
    }
  }
});

test('a participants batch over HTTP: every action is checked for locked participant fields (reject refuses the whole, strip removes them from each action, other bytes as sent)', T, async () => {
  const batch = (a, b) => `{"actions":[{"id":"${a}","method":"PATCH","params":{"notify":false}},` +
    `{"id":"${b}","method":"PUT","params":{"access": "Read","notify":true}}]}`;
  for (const app of ['rej', 'strip', 'repr', 'open']) {
    const me = fresh('me'), c = await seedConv(app, me), url = `/v1/${app}/conversations/${c}/participants`;
    const from = (await be.log()).length, body = batch(me, 'bob');
    const r = await one(request('POST', url, body, { app, user: me }));
    const got = await received(from, url);
    if (app === 'rej') {
      assert.equal(r.status, 403, r.body.toString());
      assert.equal(json(r).errorCode, 'FIELD_LOCKED');
      assert.match(json(r).reasons[0], /'access' of participants/);
      assert.deepEqual(got, [], 'nothing forwarded');
    } else {
      assert.equal(got.length, 1, `${app}: forwarded`);
      const sent = Buffer.from(got[0].body, 'base64').toString();
      if (app === 'strip')
        assert.equal(sent, `{"actions":[{"id":"${me}","method":"PATCH","params":{"notify":false}},` +
          '{"id":"bob","method":"PUT","params":{"notify":true}}]}');
      else
        assert.equal(sent, body, `${app}: as sent`);
    }
  }
  // with participant lists the batch is read strictly: a batch of another shape is refused 400
  const me = fresh('me'), c = await seedConv('rej', me), url = `/v1/rej/conversations/${c}/participants`;
  const from = (await be.log()).length;
  const r = await one(request('POST', url, '{"actions":[{"id":"bob","method":"PUT","params":{},"x":1}]}', { app: 'rej', user: me }));
  assert.equal(r.status, 400, r.body.toString());
  assert.deepEqual(await received(from, url), []);
});

test('conversation PUT and POST: custom.tier and a participation field are locked, the rest passes', T, async () => {
  const me = fresh('me'), c = await seedConv('rej', me), url = `/v1/rej/conversations/${c}`;
  let r = await one(request('PUT', url, '{"subject":"New","custom":{"tier":"gold"}}', { app: 'rej', user: me }));
  assert.equal(r.status, 403);
  assert.match(json(r).reasons[0], /'custom\.tier' of conversations/);
  r = await one(request('PUT', url, '{"subject":"New","access":"Read"}', { app: 'rej', user: me }));
  assert.equal(r.status, 403, 'the data of a conversation change carries participation fields');
  r = await one(request('PUT', url, '{"subject":"New","custom":{"k":"v"}}', { app: 'rej', user: me }));
  assert.equal(r.status, 200, r.body.toString());
  assert.equal((await be.state('rej')).conversations[c].subject, 'New');
  const c2 = fresh('c');
  r = await one(request('POST', `/v1/strip/conversations/${c2}`, '{"subject":"Made","custom":{"tier":"gold","k":1}}', { app: 'strip', user: me }));
  assert.equal(r.status, 200, r.body.toString());
  const st = (await be.state('strip')).conversations[c2];
  assert.equal(st.subject, 'Made');
  assert.deepEqual(st.custom, { k: 1 });
});

test('report mode: forwarded as sent, would_strip / would_refuse logged', T, async () => {
  for (const app of ['rep', 'repr']) {
    const u = await seedUser(app), url = `/v1/${app}/users/${u}`, from = (await be.log()).length;
    const body = '{"name":"New",  "role":"admin"}';
    const r = await one(request('PUT', url, body, { app, user: u }));
    assert.equal(r.status, 200, r.body.toString());
    const [got] = await received(from, url);
    assert.equal(Buffer.from(got.body, 'base64').toString(), body);
    assert.equal((await be.state(app)).users[u].role, 'admin');
    const event = app === 'rep' ? 'would_strip' : 'would_refuse';
    await waitFor(() => sg.logs().some((l) => l.event === event && l.path === `/users/${u}`));
  }
});

test('an app with no lists: its changes are relayed byte for byte (not parsed: duplicate keys pass)', T, async () => {
  const u = await seedUser('open'), url = `/v1/open/users/${u}`;
  for (const chunked of [0, 2]) {
    const body = `{"name":"N${chunked}","role":"x" , "role":"admin"}`;
    const bytes = request('PUT', url, body, { app: 'open', user: u, chunked });
    const before = (await be.rawAll()).length;
    const r = await one(bytes);
    assert.equal(r.status, 200, r.body.toString());
    const raw = (await be.rawAll()).subarray(before).toString('latin1');
    const sentBody = bytes.subarray(bytes.indexOf('\r\n\r\n') + 4).toString('latin1');
    assert.ok(raw.endsWith(`\r\n\r\n${sentBody}`), `the body as sent: ${JSON.stringify(raw.slice(-120))}`);
    assert.equal((await be.state('open')).users[u].role, 'admin');
  }
});

test('a body that is not strict JSON: 400, nothing forwarded, the connection goes on', T, async () => {
  const u = await seedUser('strip'), url = `/v1/strip/users/${u}`, from = (await be.log()).length;
  const bad = ['{"role":"member","role":"admin"}', '{name:"x"}', '["not","an","object"]', '{"name":"x"'];
  for (const chunked of [0, 2]) {
    const pieces = bad.map((b) => request('PUT', url, b, { app: 'strip', user: u, chunked }));
    pieces.push(request('PUT', url, '{"name":"Fine"}', { app: 'strip', user: u }));
    const { rs, closed } = await converse(pieces);
    assert.deepEqual(rs.map((r) => r.status), [400, 400, 400, 400, 200]);
    assert.ok(rs.slice(0, 4).every((r) => json(r).errorCode === 'INVALID_REQUEST'));
    assert.ok(!closed || rs.length === 5);
  }
  const got = await received(from, url);
  assert.deepEqual(got.map((e) => Buffer.from(e.body, 'base64').toString()), ['{"name":"Fine"}', '{"name":"Fine"}']);
  assert.equal((await be.state('strip')).users[u].role, 'member');
});

test('keep-alive after a refusal: the next request on the connection is answered', T, async () => {
  const u = await seedUser('rej'), url = `/v1/rej/users/${u}`;
  const get = Buffer.from(`GET ${url} HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${userToken('rej', u, apps.rej)}\r\n\r\n`);
  const { rs } = await converse([request('PUT', url, '{"role":"admin"}', { app: 'rej', user: u, chunked: 2 }), get,
    request('PUT', url, '{"name":"Kept"}', { app: 'rej', user: u })]);
  assert.deepEqual(rs.map((r) => r.status), [403, 200, 200]);
  assert.ok(rs.every((r) => (r.h('connection') || '') !== 'close'));
  assert.equal(json(rs[1]).role, 'member');
  assert.equal((await be.state('rej')).users[u].name, 'Kept');
});

test('a body that cannot be read before the decision: 417 for Expect: 100-continue, 413 over decide_body', T, async () => {
  const u = await seedUser('rej'), url = `/v1/rej/users/${u}`;
  const head = `PUT ${url} HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${userToken('rej', u, apps.rej)}\r\nContent-Type: application/json\r\n`;
  let r = await one(Buffer.from(`${head}Expect: 100-continue\r\nContent-Length: 16\r\n\r\n`));
  assert.equal(r.status, 417);
  r = await one(Buffer.from(`${head}Content-Length: ${70 * 1024}\r\n\r\n`));
  assert.equal(r.status, 413);
  // an app with no lists: as before (100 Continue from the backend's side, the body streamed)
  const o = await seedUser('open');
  const big = `{"name":"${'x'.repeat(70 * 1024)}"}`;
  r = await one(request('PUT', `/v1/open/users/${o}`, big, { app: 'open', user: o }));
  assert.equal(r.status, 200);
});
