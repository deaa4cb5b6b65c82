// Operator routes (#17, protocol.md 7.6) for a legacy HTTP sync API with its own URL scheme
// and no credential at all (the reference backend's /legacy/...: it trusts whoever calls and
// parses JSON leniently). With routes telling syncgate which call is which, the app's switches
// hold for it as for the SDK: switched off, a mutation is answered by syncgate (403, or 409
// when the user or conversation exists, looked up with the secret key) and nothing reaches the
// backend; switched on, the request reaches it byte for byte. A body that is not strict JSON is
// refused 400 whatever the switches (the backend would read `{"role":"x","role":"admin"}` as
// admin). And the route table as the operator sees it: `-T` lists it in precedence order,
// `-t` runs the file's [route-test] lines, a bad route line names FILE:LINE.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { SYNCGATE, startBackend, startSyncgate, rawExchange, parseResponses } from '../lib/harness.mjs';

const LOCKED_KEY = 'sk_test_locked', OPEN_KEY = 'sk_test_open';
const APPS = `[app:locked]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${LOCKED_KEY}\n` +
  `[app:open]\nuser_sync = on\nconversation_sync = on\nsecret_key = ${OPEN_KEY}\n`;
const ROUTES =
  '[route:legacy-user-set]\nmatch = PUT,PATCH /legacy/{app}/users/{user}\nsync = user_set\nbody = json\n' +
  '[route:legacy-user-create-at]\nmatch = POST /legacy/{app}/users/{user}\nsync = user_create\nbody = json\n' +
  '[route:legacy-user-create]\nmatch = POST /legacy/{app}/users\nsync = user_create\nbody = json\nuser = body:id\n' +
  '[route:legacy-conv-create]\nmatch = POST /legacy/{app}/conversations\nsync = conversation_create\nbody = json\nconversation = body:id\n' +
  '[route:legacy-member]\nmatch = PUT /legacy/{app}/conversations/{conversation}/members/{participant}\nsync = participant\nbody = json\n' +
  '[route:legacy-read]\nmatch = GET /legacy/{app}/{*}\nsync = none\nupstream = legacy\n';
const OPERATOR = ['legacy-user-set', 'legacy-user-create-at', 'legacy-user-create', 'legacy-conv-create', 'legacy-member', 'legacy-read'];
const BUILTIN = ['talkjs-realtime', 'talkjs-realtime-custom', 'talkjs-rest', 'talkjs-rest-custom', 'talkjs-api'];
const T = { timeout: 20000 };

let be, sg;
before(async () => {
  be = await startBackend({ apps: { locked: LOCKED_KEY, open: OPEN_KEY } });
  // reads go to a named upstream: the same backend, under its own name
  sg = await startSyncgate(be.port, `${APPS}[upstream:legacy]\nurl = http://127.0.0.1:${be.port}\n${ROUTES}`);
});
after(async () => { await sg?.stop(); await be?.stop(); });

let n = 0;
const fresh = (what) => `${what}${++n}_${process.pid}`;

// A legacy client's request: no Authorization, a JSON body (a string, sent as UTF-8).
function request(method, target, body = '', { close = false } = {}) {
  const b = Buffer.from(body);
  return Buffer.concat([Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: legacy.test\r\nUser-Agent: legacy-client/1.0\r\n` +
    `${b.length || method !== 'GET' ? `Content-Type: application/json\r\nContent-Length: ${b.length}\r\n` : ''}${close ? 'Connection: close\r\n' : ''}\r\n`, 'latin1'), b]);
}

// How many complete (Content-Length framed) responses BUF holds.
function complete(buf) {
  let k = 0;
  for (const r of parseResponses(buf)) {
    const cl = r.h('content-length');
    if (cl !== undefined && r.body.length < Number(cl)) break;
    k++;
  }
  return k;
}

// Writes PIECES on one connection, PAUSE ms apart, the next only once the answers to the
// previous ones are in when STEP; resolves with the responses once WANT are complete, the
// peer closed, or TIMEOUT ms passed.
function converse(port, pieces, { want = pieces.length, step = false, timeout = 5000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1'), chunks = [];
    let closed = false, done = false, sentCount = 0;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, closed, rs: parseResponses(data) });
    };
    const t = setTimeout(finish, timeout);
    const next = () => { if (!s.destroyed && sentCount < pieces.length) s.write(pieces[sentCount++]); };
    s.on('data', (d) => {
      chunks.push(d);
      const k = complete(Buffer.concat(chunks));
      if (k >= want) setTimeout(finish, 30);
      else if (step && k >= sentCount) next();
    });
    s.on('end', () => { closed = true; finish(); });
    s.on('close', () => { closed = true; finish(); });
    s.on('error', () => { closed = true; finish(); });
    s.on('connect', () => { if (step) next(); else while (sentCount < pieces.length) next(); });
  });
}
const one = async (req) => { const res = await converse(sg.port, [req]); return [res, res.rs[0]]; };
const show = (res) => res.data.toString('latin1').slice(0, 400).replace(/\r\n/g, '\\r\\n');

// syncgate's own answer: STATUS, JSON {"errorCode": CODE, "reasons": [...]} and nothing else;
// for a switch's refusal the reasons name the app.
function assertOwnAnswer(res, r, status, code, app) {
  assert.ok(r, `no answer: ${show(res)}`);
  assert.equal(r.status, status, show(res));
  assert.match(r.h('content-type') || '', /application\/json/);
  const j = JSON.parse(r.body.toString());
  assert.deepEqual(Object.keys(j).sort(), ['errorCode', 'reasons'], show(res));
  assert.equal(j.errorCode, code, show(res));
  assert.ok(Array.isArray(j.reasons) && j.reasons.length > 0 && j.reasons.every((x) => typeof x === 'string'), 'reasons');
  if (app) assert.match(j.reasons.join(' '), new RegExp(`\\b${app}\\b`), 'the reason names the app');
  return j;
}

// What of the legacy API reached the backend (syncgate's own lookups are GET /v1/...).
const legacyAtBackend = async () => (await be.log()).filter((e) => e.kind === 'http' && e.url.startsWith('/legacy/')).map((e) => `${e.method} ${e.url}`);
const lookupsAtBackend = async () => (await be.log()).filter((e) => e.kind === 'http' && e.url.startsWith('/v1/'));
const state = (app) => be.state(app);

test('switch off: every legacy mutation is answered by syncgate (403, naming the app), nothing reaches the backend', T, async () => {
  const uid = fresh('u'), cid = fresh('c');
  await be.seed({ appId: 'locked', users: { [uid]: { name: 'Before' } }, conversations: { [cid]: { subject: 'Seeded', participants: { [uid]: {} } } } });
  const nu = fresh('new'), nc = fresh('nc');
  await be.clearLog();
  for (const [req, status, code] of [
    [request('PUT', `/legacy/locked/users/${uid}`, '{"name":"Changed"}'), 403, 'USER_SYNC_DISABLED'],
    [request('PATCH', `/legacy/locked/users/${uid}`, '{"role":"admin"}'), 403, 'USER_SYNC_DISABLED'],
    [request('PUT', `/legacy/locked/users/${nu}`, '{"name":"New"}'), 403, 'USER_SYNC_DISABLED'],
    [request('POST', '/legacy/locked/users', JSON.stringify({ id: nu, name: 'New' })), 403, 'USER_SYNC_DISABLED'],
    [request('POST', `/legacy/locked/users/${nu}`, '{"name":"New"}'), 403, 'USER_SYNC_DISABLED'],
    [request('POST', '/legacy/locked/conversations', JSON.stringify({ id: nc, subject: 'New', participants: [uid] })), 403, 'CONVERSATION_SYNC_DISABLED'],
    [request('PUT', `/legacy/locked/conversations/${cid}/members/${nu}`, '{"access":"ReadWrite","notify":true}'), 403, 'UNAUTHORIZED_TO_EDIT_PARTICIPANT'],
    [request('PUT', `/legacy/locked/conversations/${cid}/members/${uid}`, '{"access":"Read","notify":false}'), 403, 'UNAUTHORIZED_TO_EDIT_PARTICIPANT'],
  ]) {
    const [res, r] = await one(req);
    assertOwnAnswer(res, r, status, code, 'locked');
  }
  assert.deepEqual(await legacyAtBackend(), [], 'the backend received none of them');
  const st = await state('locked');
  assert.equal(st.users[uid].name, 'Before');
  assert.equal(st.users[uid].role, undefined);
  assert.equal(st.users[nu], undefined, 'no user was created');
  assert.equal(st.conversations[nc], undefined, 'no conversation was created');
  assert.deepEqual(Object.keys(st.conversations[cid].participants), [uid], 'no member was added');
  assert.equal(st.conversations[cid].participants[uid].access, 'ReadWrite', 'nor changed');
  // the creates were decided on facts looked up with the app's secret key
  const lookups = await lookupsAtBackend();
  for (const p of [`/v1/locked/users/${nu}`, `/v1/locked/conversations/${nc}`]) {
    const l = lookups.filter((e) => e.method === 'GET' && e.url === p);
    assert.ok(l.length >= 1, `a lookup of ${p}`);
    assert.ok(l.every((e) => e.rawHeaders.includes(`Bearer ${LOCKED_KEY}`)), 'with the secret key');
  }
});

test('switch off: creating a user or conversation that exists -> 409 *_ALREADY_EXISTS from the lookup, nothing forwarded', T, async () => {
  const uid = fresh('u'), cid = fresh('c');
  await be.seed({ appId: 'locked', users: { [uid]: { name: 'Existing' } }, conversations: { [cid]: { subject: 'Existing' } } });
  await be.clearLog();
  let [res, r] = await one(request('POST', '/legacy/locked/users', JSON.stringify({ id: uid, name: 'Mine now' })));
  assertOwnAnswer(res, r, 409, 'USER_ALREADY_EXISTS', 'locked');
  [res, r] = await one(request('POST', `/legacy/locked/users/${uid}`, '{"name":"Mine now"}'));
  assertOwnAnswer(res, r, 409, 'USER_ALREADY_EXISTS', 'locked');
  [res, r] = await one(request('POST', '/legacy/locked/conversations', JSON.stringify({ id: cid, subject: 'Mine now' })));
  assertOwnAnswer(res, r, 409, 'CONVERSATION_ALREADY_EXISTS', 'locked');
  assert.deepEqual(await legacyAtBackend(), []);
  const urls = (await lookupsAtBackend()).map((e) => `${e.method} ${e.url}`);
  assert.ok(urls.includes(`GET /v1/locked/users/${uid}`), urls.join('\n'));
  assert.ok(urls.includes(`GET /v1/locked/conversations/${cid}`), urls.join('\n'));
  const st = await state('locked');
  assert.equal(st.users[uid].name, 'Existing');
  assert.equal(st.conversations[cid].subject, 'Existing');
});

test('switch off: reads (sync = none) pass, to their route\'s upstream', T, async () => {
  const uid = fresh('u');
  await be.seed({ appId: 'locked', users: { [uid]: { name: 'Readable' } } });
  await be.clearLog();
  const [res, r] = await one(request('GET', `/legacy/locked/users/${uid}`));
  assert.equal(r?.status, 200, show(res));
  assert.equal(JSON.parse(r.body.toString()).name, 'Readable');
  assert.deepEqual(await legacyAtBackend(), [`GET /legacy/locked/users/${uid}`]);
});

const FWD = 'X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nForwarded: for=127.0.0.1;proto=http\r\n';
// The request as syncgate must forward it (as http_byte_for_byte.test.mjs): hop-by-hop
// headers out, the forwarding headers in, everything else, the request line and the body, as sent.
function expectedForward(req) {
  const s = req.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  const lines = s.slice(0, end).split('\r\n').filter((l) => !/^(connection|keep-alive|te|upgrade|proxy-connection):/i.test(l));
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n' + FWD + '\r\n', 'latin1'), req.subarray(end + 4)]);
}

test('switch on: each legacy mutation reaches the backend byte for byte and takes effect', T, async () => {
  const uid = fresh('u'), spaced = fresh('s'), nu = fresh('new'), at = fresh('at'), nc = fresh('nc'), cid = fresh('c');
  await be.seed({ appId: 'open', users: { [uid]: { name: 'Before' } }, conversations: { [cid]: { subject: 'Seeded' } } });
  // odd spacing, escapes, key order: a proxy that re-serialised the JSON would change the bytes
  const cases = [
    [request('PUT', `/legacy/open/users/${uid}?src=legacy`, '{ "name" : "Zo\\u00eb",\n  "custom":{"k":"v"} }', { close: true }), 200],
    [request('PATCH', `/legacy/open/users/${uid}`, '{"role":"editor"}', { close: true }), 200],
    [request('PUT', `/legacy/open/users/${spaced}%201`, '{"name":"Spaced"}', { close: true }), 200],
    [request('POST', '/legacy/open/users', `{"name":"N\u00e9w","id":"${nu}"}`, { close: true }), 201],
    [request('POST', `/legacy/open/users/${at}`, '{"name":"At"}', { close: true }), 201],
    [request('POST', '/legacy/open/conversations', `{"id":"${nc}","subject":"Fresh","participants":["${uid}"]}`, { close: true }), 201],
    [request('PUT', `/legacy/open/conversations/${cid}/members/${uid}`, '{"access":"Read","notify":false}', { close: true }), 200],
  ];
  for (const [req, status] of cases) {
    await be.clearLog();
    const res = await rawExchange(sg.port, req, { idle: 400 });
    const [r] = parseResponses(res.data);
    assert.equal(r?.status, status, show(res));
    assert.deepEqual((await be.rawAll()).toString('latin1'), expectedForward(req).toString('latin1'), 'the bytes the backend received');
  }
  const st = await state('open');
  assert.equal(st.users[uid].name, 'Zoë');
  assert.deepEqual(st.users[uid].custom, { k: 'v' });
  assert.equal(st.users[uid].role, 'editor');
  assert.equal(st.users[`${spaced} 1`].name, 'Spaced', 'u%201 is the user "u 1"');
  assert.equal(st.users[nu].name, 'Néw');
  assert.equal(st.users[at].name, 'At');
  assert.equal(st.conversations[nc].subject, 'Fresh');
  assert.equal(st.conversations[cid].participants[uid].access, 'Read');
});

// Bodies a lenient parser reads one way and a strict one cannot read at all.
const BAD_BODIES = (id) => [
  ['a duplicate key', `{"id":"${id}","role":"x","role":"admin"}`],
  ['truncated JSON', `{"id":"${id}","name":"X"`],
  ['a JSON array', `[{"id":"${id}"}]`],
  ['a JSON string', `"${id}"`],
  ['trailing garbage', `{"id":"${id}"} x`],
];
for (const app of ['open', 'locked']) {
  test(`user_sync ${app === 'open' ? 'on' : 'off'}: a body that is not strict JSON -> 400 INVALID_REQUEST, never forwarded`, T, async () => {
    const uid = fresh('u'), cid = fresh('c');
    await be.seed({ appId: app, users: { [uid]: { name: 'Before' } }, conversations: { [cid]: { subject: 'Seeded', participants: { [uid]: {} } } } });
    await be.clearLog();
    const failures = [];
    const expect400 = async (what, req) => {
      const [res, r] = await one(req);
      try { assertOwnAnswer(res, r, 400, 'INVALID_REQUEST'); } catch (e) { failures.push(`${what}: ${e.message.split('\n')[0]}`); }
    };
    for (const [what, body] of BAD_BODIES(fresh('id'))) {
      await expect400(`POST users, ${what}`, request('POST', `/legacy/${app}/users`, body));
      await expect400(`POST conversations, ${what}`, request('POST', `/legacy/${app}/conversations`, body));
      await expect400(`PUT user, ${what}`, request('PUT', `/legacy/${app}/users/${uid}`, body));
      await expect400(`PUT member, ${what}`, request('PUT', `/legacy/${app}/conversations/${cid}/members/${uid}`, body));
    }
    // the id the route names is missing, or not a string
    for (const [what, body] of [['no id', '{"name":"X"}'], ['a number id', '{"id":5,"name":"X"}'], ['a null id', '{"id":null}'], ['an object id', '{"id":{"x":"y"}}']]) {
      await expect400(`POST users, ${what}`, request('POST', `/legacy/${app}/users`, body));
      await expect400(`POST conversations, ${what}`, request('POST', `/legacy/${app}/conversations`, body));
    }
    assert.deepEqual(failures, []);
    assert.deepEqual(await legacyAtBackend(), [], 'none reached the backend');
    const st = await state(app);
    assert.equal(st.users[uid].name, 'Before');
    assert.equal(st.users[uid].role, undefined, 'the duplicate "role" made nobody an admin');
    assert.deepEqual(Object.keys(st.conversations[cid].participants), [uid]);
  });
}

test('keep-alive: after a 403, a 409 and a 400 on the connection, the next requests are still answered, in order', T, async () => {
  const existing = fresh('u'), reader = fresh('r'), later = fresh('l');
  await be.seed({ appId: 'locked', users: { [existing]: {}, [reader]: { name: 'Reader' } } });
  await be.clearLog();
  const pieces = [
    request('PUT', `/legacy/locked/users/${existing}`, '{"name":"No"}'),
    request('POST', '/legacy/locked/users', JSON.stringify({ id: existing })),
    request('POST', '/legacy/open/users', `{"id":"${later}","id":"${later}x"}`),
    request('GET', `/legacy/locked/users/${reader}`),
    request('PUT', `/legacy/open/users/${later}`, '{"name":"Later"}'),
  ];
  for (const step of [true, false]) { // one at a time, then all pipelined in one write
    await be.clearLog();
    const res = await converse(sg.port, step ? pieces : [Buffer.concat(pieces)], { want: 5, step });
    assert.equal(res.rs.length, 5, show(res));
    assert.deepEqual(res.rs.map((r) => r.status), [403, 409, 400, 200, 200], show(res));
    assert.equal(JSON.parse(res.rs[0].body).errorCode, 'USER_SYNC_DISABLED');
    assert.equal(JSON.parse(res.rs[1].body).errorCode, 'USER_ALREADY_EXISTS');
    assert.equal(JSON.parse(res.rs[2].body).errorCode, 'INVALID_REQUEST');
    assert.equal(JSON.parse(res.rs[3].body).name, 'Reader');
    assert.equal(res.closed, false, 'the connection stays open');
    assert.deepEqual(await legacyAtBackend(), [`GET /legacy/locked/users/${reader}`, `PUT /legacy/open/users/${later}`]);
  }
  assert.equal((await state('open')).users[later].name, 'Later');
  assert.equal((await state('open')).users[`${later}x`], undefined);
});

test('ids are decided decoded: u%201 is "u 1" (path), "u\\u00201" is "u 1" (JSON); literal segments match percent-encoded or in any case', T, async () => {
  const base = fresh('p'), other = fresh('q');
  // "<base> 1" exists; for OTHER only a user literally named "<other>%201" does
  await be.seed({ appId: 'locked', users: { [`${base} 1`]: { name: 'Spaced' }, [`${other}%201`]: { name: 'Literal' } } });
  await be.clearLog();
  let [res, r] = await one(request('POST', `/legacy/locked/users/${base}%201`, '{}'));
  assertOwnAnswer(res, r, 409, 'USER_ALREADY_EXISTS', 'locked');
  [res, r] = await one(request('POST', `/legacy/locked/users/${other}%201`, '{}'));
  assertOwnAnswer(res, r, 403, 'USER_SYNC_DISABLED', 'locked');
  [res, r] = await one(request('POST', '/legacy/locked/users', `{"id":"${base}\\u00201"}`));
  assertOwnAnswer(res, r, 409, 'USER_ALREADY_EXISTS', 'locked');
  [res, r] = await one(request('POST', '/legacy/locked/users', `{"id":"${base} 1"}`));
  assertOwnAnswer(res, r, 409, 'USER_ALREADY_EXISTS', 'locked');
  const looked = (await lookupsAtBackend()).filter((e) => e.method === 'GET').map((e) => decodeURIComponent(e.url));
  assert.ok(looked.includes(`/v1/locked/users/${base} 1`), looked.join('\n'));
  assert.ok(looked.includes(`/v1/locked/users/${other} 1`), looked.join('\n'));
  assert.ok(!looked.includes(`/v1/locked/users/${other}%201`), 'never the undecoded id');
  // a route's literal segments, written otherwise, still name the route: no way around it
  for (const target of [`/legacy/locked/%75sers/${base}`, `/LEGACY/locked/Users/${base}`, `/%6cegacy/locked/USERS/${base}`]) {
    [res, r] = await one(request('PUT', target, '{"name":"Sneaky"}'));
    assertOwnAnswer(res, r, 403, 'USER_SYNC_DISABLED', 'locked');
  }
  assert.deepEqual(await legacyAtBackend(), []);
  assert.equal((await state('locked')).users[`${base} 1`].name, 'Spaced');
});

// ---- the route table as the operator sees it ----

const run = (...args) => spawnSync(SYNCGATE, args, { encoding: 'utf8' });
const lines = (text) => text.split('\n');
// The 1-based line numbers of section [NAME] in TEXT: from its header to the line before the next.
function sectionLines(text, name) {
  const ls = lines(text), start = ls.findIndex((l) => l.trim() === `[${name}]`);
  assert.ok(start >= 0, `[${name}] in the file`);
  let end = start + 1;
  while (end < ls.length && !/^\s*\[/.test(ls[end])) end++;
  return Array.from({ length: end - start }, (_, i) => start + 1 + i);
}
const lineOf = (text, exact) => lines(text).indexOf(exact) + 1;
function tmpConf(name, text) {
  const file = path.join(sg.dir, name);
  fs.writeFileSync(file, text);
  return file;
}

// "NAME METHODS PATTERN upstream=U sync=S [k=v ...] (FILE:LINE | built-in)", columns padded;
// lines starting with # are comments.
function parseTable(stdout) {
  return lines(stdout).filter((l) => l.trim() && !l.startsWith('#')).map((l) => {
    const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s+\(([^()]*)\)$/.exec(l);
    assert.ok(m, `a route line: ${l}`);
    const kv = Object.fromEntries(m[4].split(/\s+/).map((x) => [x.slice(0, x.indexOf('=')), x.slice(x.indexOf('=') + 1)]));
    return { line: l, name: m[1], methods: m[2], pattern: m[3], kv, origin: m[5] };
  });
}
// The precedence key: more literal segments, then without {*} before with, then fewer
// placeholders, then fewer methods ("*" counts as all of them).
function rank(r) {
  const segs = r.pattern.split('/').filter(Boolean);
  const ph = segs.filter((s) => /^\{.*\}$/.test(s)).length;
  return [-(segs.length - ph), segs.includes('{*}') ? 1 : 0, ph, r.methods === '*' ? Infinity : r.methods.split(',').length];
}
const before_ = (a, b) => { for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i]; return false; };

test('-T lists operator and built-in routes in precedence order, each with FILE:LINE or built-in', T, () => {
  const text = fs.readFileSync(sg.file, 'utf8');
  const r = run('-T', '-c', sg.file);
  assert.equal(r.status, 0, r.stderr);
  const rows = parseTable(r.stdout);
  const names = rows.map((x) => x.name);
  for (const name of [...OPERATOR, ...BUILTIN]) assert.equal(names.filter((x) => x === name).length, 1, `${name} once in\n${r.stdout}`);
  assert.ok(rows.every((x) => OPERATOR.includes(x.name) || x.origin === 'built-in'), `no route of unknown origin:\n${r.stdout}`);
  const at = (name) => rows.find((x) => x.name === name);
  // the rule, pair by pair: no route listed after one it should precede
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      assert.ok(!before_(rank(rows[j]), rank(rows[i])), `${rows[j].name} should come before ${rows[i].name}:\n${r.stdout}`);
    }
  }
  const order = ['legacy-member', 'legacy-user-create', 'legacy-user-create-at', 'legacy-user-set', 'legacy-read', 'talkjs-rest'];
  for (let i = 1; i < order.length; i++) assert.ok(names.indexOf(order[i - 1]) < names.indexOf(order[i]), `${order[i - 1]} before ${order[i]}:\n${r.stdout}`);
  assert.ok(names.indexOf('talkjs-realtime-custom') < names.indexOf('legacy-member'), 'fewer placeholders first');
  // what each says
  assert.deepEqual(at('legacy-user-set').methods.split(',').sort(), ['PATCH', 'PUT']);
  assert.equal(at('legacy-user-set').pattern, '/legacy/{app}/users/{user}');
  assert.deepEqual(at('legacy-user-set').kv, { upstream: 'default', sync: 'user_set', body: 'json' });
  assert.deepEqual(at('legacy-user-create').kv, { upstream: 'default', sync: 'user_create', body: 'json', user: 'body:id' });
  assert.deepEqual(at('legacy-conv-create').kv, { upstream: 'default', sync: 'conversation_create', body: 'json', conversation: 'body:id' });
  assert.equal(at('legacy-member').kv.sync, 'participant');
  assert.equal(at('legacy-read').methods, 'GET');
  assert.deepEqual(at('legacy-read').kv, { upstream: 'legacy', sync: 'none' });
  assert.equal(at('talkjs-realtime').pattern, '/v1/{app}/realtime/{user}');
  assert.match(at('talkjs-realtime').kv.sync, /^(talkjs|realtime)$/);
  assert.equal(at('talkjs-rest').methods, '*');
  assert.deepEqual(at('talkjs-rest').kv, { upstream: 'default', sync: 'talkjs' });
  for (const name of OPERATOR) {
    const m = /^(.*):(\d+)$/.exec(at(name).origin);
    assert.ok(m, at(name).line);
    assert.equal(m[1], sg.file);
    assert.ok(sectionLines(text, `route:${name}`).includes(Number(m[2])), `${at(name).line}: a line of [route:${name}]`);
  }
  for (const name of BUILTIN) assert.equal(at(name).origin, 'built-in', at(name).line);
});

test('-T: an operator route with a built-in\'s name or match replaces it', T, () => {
  const text = fs.readFileSync(sg.file, 'utf8') +
    '[route:talkjs-api]\nmatch = GET,POST /api/v0/{app}/{*}\n' +
    '[route:my-rest]\nmatch = * /v1/{app}/{*}\nsync = talkjs\n';
  const file = tmpConf('replace.conf', text);
  const r = run('-T', '-c', file);
  assert.equal(r.status, 0, r.stderr);
  const rows = parseTable(r.stdout);
  const api = rows.filter((x) => x.name === 'talkjs-api');
  assert.equal(api.length, 1, r.stdout);
  const m = /^(.*):(\d+)$/.exec(api[0].origin);
  assert.ok(m && m[1] === file && sectionLines(text, 'route:talkjs-api').includes(Number(m[2])), `the operator's, with its FILE:LINE: ${api[0].line}`);
  assert.deepEqual(api[0].methods.split(',').sort(), ['GET', 'POST']);
  assert.ok(!rows.some((x) => x.name === 'talkjs-rest'), `the built-in with my-rest's match is gone:\n${r.stdout}`);
  assert.ok(rows.some((x) => x.name === 'my-rest'));
  assert.equal(rows.filter((x) => x.pattern === '/v1/{app}/{*}').length, 1);
});

const PASSING = [
  'PUT /legacy/locked/users/u1 -> route=legacy-user-set sync=user_set upstream=default',
  'PATCH /LEGACY/locked/Users/u1 -> route=legacy-user-set sync=user_set',
  'PUT /legacy/locked/%75sers/u1 -> route=legacy-user-set',
  'POST /legacy/locked/users -> route=legacy-user-create sync=user_create',
  'POST /legacy/locked/users/u1 -> route=legacy-user-create-at sync=user_create',
  'POST /legacy/locked/conversations -> route=legacy-conv-create sync=conversation_create',
  'PUT /legacy/locked/conversations/c1/members/u1 -> route=legacy-member sync=participant',
  'GET /legacy/locked/users/u1 -> route=legacy-read sync=none upstream=legacy',
  'GET /v1/locked/realtime/u1 -> route=talkjs-realtime upstream=default',
  'GET /public_api/v1/locked/realtime/u1 -> route=talkjs-realtime-custom',
  'DELETE /v1/locked/users/u1 -> route=talkjs-rest sync=talkjs upstream=default',
];

test('-t runs the [route-test] lines: all passing -> exit 0', T, () => {
  const file = tmpConf('routes-ok.conf', `${fs.readFileSync(sg.file, 'utf8')}[route-test]\n${PASSING.join('\n')}\n`);
  const r = run('-t', '-c', file);
  assert.equal(r.status, 0, r.stderr);
});

for (const [what, bad] of [
  ['another route', 'GET /legacy/locked/users/u1 -> route=legacy-user-set'],
  ['another sync', 'PUT /legacy/locked/users/u1 -> route=legacy-user-set sync=user_create'],
  ['another upstream', 'GET /legacy/locked/users/u1 -> route=legacy-read upstream=default'],
]) {
  test(`-t: a [route-test] line expecting ${what} fails, exit 1, naming FILE:LINE`, T, () => {
    const text = `${fs.readFileSync(sg.file, 'utf8')}[route-test]\n${PASSING.slice(0, 3).join('\n')}\n${bad}\n${PASSING.slice(3).join('\n')}\n`;
    const file = tmpConf('routes-bad.conf', text);
    const r = run('-t', '-c', file);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    const line = lineOf(text, bad);
    assert.match(r.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}: route-test: `, 'm'));
    const named = [...r.stderr.matchAll(/:(\d+): route-test:/g)].map((m) => Number(m[1]));
    assert.deepEqual([...new Set(named)], [line], 'only the failing line is reported');
  });
}

test('a bad route fails the load with FILE:LINE (-t and at start)', T, () => {
  const head = fs.readFileSync(sg.file, 'utf8');
  const cases = [
    // [what, the section, the exact bad line or null when any line of the section will do]
    ['{*} not last', '[route:bad]\nmatch = PUT /legacy/{*}/users\nsync = user_set\n', 'match = PUT /legacy/{*}/users'],
    ['an unknown placeholder', '[route:bad]\nmatch = PUT /legacy/{app}/users/{nobody}\nsync = user_set\n', 'match = PUT /legacy/{app}/users/{nobody}'],
    ['an unknown sync', '[route:bad]\nmatch = PUT /legacy/{app}/users/{user}\nsync = sometimes\n', 'sync = sometimes'],
    ['realtime on a POST', '[route:bad]\nmatch = POST /legacy/{app}/realtime/{user}\nsync = realtime\n', null],
    ['realtime without {user}', '[route:bad]\nmatch = GET /legacy/{app}/realtime\nsync = realtime\n', null],
    ['an upstream not defined', '[route:bad]\nmatch = PUT /legacy/{app}/users/{user}\nupstream = nowhere\n', null],
    ['a rewrite naming a placeholder the match has not', '[route:bad]\nmatch = PUT /legacy/{app}/users\nrewrite = /v1/{app}/users/{user}\n', null],
    ['user = from an unknown place', '[route:bad]\nmatch = POST /legacy/{app}/users\nsync = user_create\nbody = json\nuser = header:id\n', null],
  ];
  for (const [what, section, exact] of cases) {
    const text = head + section;
    const file = tmpConf('bad-route.conf', text);
    const r = run('-t', '-c', file);
    assert.equal(r.status, 1, `${what}: ${r.stderr}`);
    const m = /^(.*?):(\d+): /.exec(r.stderr);
    assert.ok(m && m[1] === file, `${what}: ${r.stderr}`);
    if (exact) assert.equal(Number(m[2]), lineOf(text, exact), `${what}: ${r.stderr}`);
    else assert.ok(sectionLines(text, 'route:bad').includes(Number(m[2])), `${what}: ${r.stderr}`);
    if (what !== cases[0][0]) continue;
    // started for real, the same error is the JSON startup line (as for any config error)
    const started = spawnSync(SYNCGATE, ['-c', file], { encoding: 'utf8', timeout: 10000 });
    assert.equal(started.status, 1, started.stderr);
    const line = JSON.parse(started.stderr.trim().split('\n').at(-1));
    assert.equal(line.event, 'startup');
    assert.equal(line.why, r.stderr.trim(), 'the same FILE:LINE message');
  }
});
