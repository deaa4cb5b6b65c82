// The fleet store (#19): syncgates sharing their switches, refusal budgets and cache
// invalidations through a real redis-server this test starts on its own port and directory.
// Three syncgates (A, B, C) in front of one backend, all with [fleet] on that Redis, the real
// @talkjs/core SDK connected to each:
// - a flip through A's admin API is shared (Redis holds it, the reply says so) and the next
//   SDK call on B and C follows it; a write whose notice was lost arrives by the version poll;
// - a participant added (a user created) through A is seen by B's next decision, though B
//   caches facts an hour;
// - a refusal budget (3/1m) used up by one refusal on each instance is used up everywhere;
// - Redis paused: decisions never wait on it; Redis killed: switches keep their values, flips
//   apply locally and say they were not shared, /readyz stays ready and says since when the
//   state is stale, a fresh instance starts from the state_file; Redis back: resync, and the
//   newer local flip reaches everyone (an instance cut off alone loses its older one);
// - key_prefix and password_file honoured on a Redis with a password; a wrong password is a
//   fleet_error, and decisions go on.
// The interface is docs/configuration.md's [fleet] section. The tests run in order and each
// leaves the switches as the files have them. FLEET_DEBUG=1 prints every instance's log lines
// (but access, refuse and exists) at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startBackend, startSyncgate, rawExchange, parseResponses, freePort, sleep, waitFor } from '../lib/harness.mjs';
import { startRedis, startForwarder, haveRedis } from '../lib/redis.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { session, uniqueUser, settle } from './sdk.mjs';
import { remoteSession } from './sdk_remote.mjs';

const skip = !haveRedis() && 'no redis-server (scripts/deps.sh test installs it)';
const apps = { demo: 'sk_test_demo', facts: 'sk_test_facts', budget: 'sk_test_budget' };
const TOKEN = 'fleet-admin-token';
const P = 'syncgate:'; // the default key_prefix
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-fleet-'));
const tokenFile = path.join(work, 'admin-token');
fs.writeFileSync(tokenFile, `${TOKEN}\n`);

let be, redis, A, B, C;
const cleanup = [];
before(async () => {
  if (skip) return;
  be = await startBackend({ apps });
  cleanup.push(() => be.stop());
  redis = await startRedis();
  cleanup.push(() => redis.stop());
  A = await instance('a');
  B = await instance('b');
  C = await instance('c');
  await Promise.all([A, B, C].map((i) => connected(i, 1, 8000)));
});
after(async () => {
  const errors = [];
  for (const f of cleanup.reverse()) { try { await f(); } catch (e) { errors.push(e); } }
  fs.rmSync(work, { recursive: true, force: true });
  setTimeout(() => process.exit(), 200).unref();
  if (errors.length) throw errors[0];
});

// ---- instances ----

// A syncgate in the fleet: demo (both switches on), facts (conversation_sync off, for the
// participant facts) and budget (user_sync off, refusal_budget 3/1m) from the file; facts
// cached an hour (negative ones 10 minutes, the most), so that only an invalidation makes a
// fact be looked up again.
// FLEET: more [fleet] lines; REDIS: what `redis =` says (default: the test's Redis).
async function instance(name, { redisAddr, fleet = 'poll = 1s\ntimeout = 1s\n', stateFile = path.join(work, `state-${name}.json`) } = {}) {
  const adminPort = await freePort();
  const conf = `workers = 2\n[admin]\nlisten = 127.0.0.1:${adminPort}\ntoken_file = ${tokenFile}\n` +
    `[app:demo]\nuser_sync = on\nconversation_sync = on\nsecret_key = ${apps.demo}\n` +
    `[app:facts]\nconversation_sync = off\nsecret_key = ${apps.facts}\nrefusal_budget = 1000/1m\n` +
    `[app:budget]\nuser_sync = off\nsecret_key = ${apps.budget}\nrefusal_budget = 3/1m\n` +
    '[limits]\nlookup_cache_ttl = 1h\nlookup_negative_ttl = 10m\n' +
    `[fleet]\nredis = ${redisAddr || `127.0.0.1:${redis.port}`}\ninstance = fleet-${name}\n` +
    (stateFile ? `state_file = ${stateFile}\n` : '') + fleet;
  const sg = await startSyncgate(be.port, conf);
  cleanup.push(() => sg.stop());
  if (process.env.FLEET_DEBUG) cleanup.push(() => process.stderr.write(`---- ${name} ----\n${sg.stderr().split('\n').filter((l) => !/"event":"(access|refuse|exists)"/.test(l)).join('\n')}\n`));
  const admin = async (method, p, body) => {
    const r = await fetch(`http://127.0.0.1:${adminPort}${p}`, { method, headers: { Authorization: `Bearer ${TOKEN}` }, body: body ? JSON.stringify(body) : undefined });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, text, json };
  };
  return Object.assign(sg, {
    name, instance: `fleet-${name}`, adminPort, stateFile, admin,
    app: async (id = 'demo') => (await admin('GET', `/apps/${id}`)).json,
    // PUT /apps/ID: the reply (asserted 200)
    flip: async (body, id = 'demo') => {
      const r = await admin('PUT', `/apps/${id}`, body);
      assert.equal(r.status, 200, `${name}: PUT /apps/${id} ${JSON.stringify(body)}: ${r.text}`);
      return r.json;
    },
    // one Prometheus sample (LABEL: a substring its labels must hold), or undefined
    metric: async (metricName, label = '') => {
      const text = (await admin('GET', '/metrics')).text;
      for (const m of text.matchAll(new RegExp(`^${metricName}(\\{[^}]*\\})? (\\S+)$`, 'gm')))
        if (!label || (m[1] || '').includes(label)) return Number(m[2]);
      return undefined;
    },
    readyz: async () => { const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`); return { status: r.status, json: await r.json() }; },
    events: (event) => sg.logs().filter((l) => l.event === event),
  });
}

// Waits until I's syncgate_fleet_connected is V.
async function connected(i, v, timeout = 5000) {
  await until(async () => (await i.metric('syncgate_fleet_connected')) === v, timeout,
    () => `${i.name}: syncgate_fleet_connected never became ${v} in ${timeout} ms; last fleet lines: ${JSON.stringify(i.logs().filter((l) => /^fleet_/.test(l.event)).slice(-5))}`);
}

async function until(fn, timeout, what) {
  try {
    return await waitFor(fn, { timeout, every: 20 });
  } catch {
    throw new Error(typeof what === 'function' ? what() : what);
  }
}

// Waits until every instance of LIST shows FIELD = VALUE for app ID (GET /apps/ID).
async function follows(list, field, value, { id = 'demo', timeout = 2000 } = {}) {
  await Promise.all(list.map((i) => until(async () => (await i.app(id))?.[field] === value, timeout,
    () => `${i.name} does not show ${id}.${field} = ${value} within ${timeout} ms`)));
}

const hash = (arr) => Object.fromEntries(Array.from({ length: arr.length / 2 }, (_, k) => [arr[2 * k], arr[2 * k + 1]]));
const sdk = (i, appId = 'demo', prefix = 'u') => session({ host: `127.0.0.1:${i.port}`, appId, userId: uniqueUser(prefix), key: apps[appId] });
const setName = (s, name = 'x') => settle(() => s.currentUser.set({ name }));
const ISO_SECOND = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

// ---- while Redis is up ----

test('three instances in the fleet: /readyz says "fleet": "ok", /stats and /metrics carry it', { skip }, async () => {
  for (const i of [A, B, C]) {
    const r = await i.readyz();
    assert.equal(r.status, 200);
    assert.equal(r.json.fleet, 'ok', `${i.name}: ${JSON.stringify(r.json)}`);
    const st = (await i.admin('GET', '/stats')).json.fleet;
    assert.equal(st.connected, true);
    assert.equal(st.instance, i.instance);
    assert.equal(st.stale_since, null);
    assert.equal(typeof st.version, 'number');
    assert.equal(typeof st.state_age_seconds, 'number');
    for (const m of ['syncgate_fleet_state_age_seconds', 'syncgate_fleet_errors_total', 'syncgate_fleet_version'])
      assert.notEqual(await i.metric(m), undefined, `${i.name}: ${m}`);
    assert.notEqual(await i.metric('syncgate_fleet_notices_total', 'kind="switch"'), undefined);
    assert.ok(i.events('fleet_connected').length >= 1, `${i.name}: a fleet_connected line`);
    assert.ok(i.events('fleet_snapshot').length >= 1, `${i.name}: a fleet_snapshot line`);
  }
});

test('a flip through A is shared: Redis holds it, B and C follow it at their next SDK call; and back', { skip }, async () => {
  const s = [A, B, C].map((i) => sdk(i, 'demo', `flip${i.name}`));
  for (const x of s) assert.ok((await setName(x, 'before')).ok, 'user_sync on: user.set resolves');
  const events = await redis.subscribe(`${P}events`);
  try {
    const notices = await B.metric('syncgate_fleet_notices_total', 'kind="switch"');
    const t0 = Date.now();
    const r = await A.flip({ user_sync: 'off' });
    assert.equal(r.user_sync, 'off');
    assert.equal(r.fleet, 'shared');
    // Redis: the app's hash, its set, the version, the notice
    const version = Number(await redis.cmd('GET', `${P}version`));
    const h = hash(await redis.cmd('HGETALL', `${P}app:demo`));
    assert.equal(h.user_sync, 'off');
    assert.equal(Number(h.version), version);
    assert.equal(h.by, 'fleet-a');
    assert.ok(Number(h['at:user_sync']) >= t0 - 1000 && Number(h['at:user_sync']) <= Date.now() + 1000, `at:user_sync ${h['at:user_sync']} is the write's wall clock`);
    assert.equal(await redis.cmd('SISMEMBER', `${P}apps`, 'demo'), 1);
    await events.waitFor((m) => m === `switch ${version}`);
    // the others follow; the next SDK call on each is refused
    await follows([B, C], 'user_sync', 'off');
    for (const x of s) {
      const c = await setName(x, 'during');
      assert.equal(c.ok, false);
      assert.match(c.message, /USER_SYNC_DISABLED/);
    }
    assert.ok(await B.metric('syncgate_fleet_notices_total', 'kind="switch"') > notices, 'B counted the notice');
    const line = A.events('admin_change').at(-1);
    assert.match(line.change, /user_sync=off/);
    assert.equal(line.fleet, 'shared');
    // and back
    const back = await A.flip({ user_sync: 'on' });
    assert.equal(back.fleet, 'shared');
    assert.ok(Number(await redis.cmd('GET', `${P}version`)) > version, 'every write bumps the version');
    await follows([B, C], 'user_sync', 'on');
    for (const x of s) assert.ok((await setName(x, 'after')).ok);
    // an app without a section is a 404 and never reaches the fleet
    assert.equal((await A.admin('PUT', '/apps/nosuchapp', { user_sync: 'off' })).status, 404);
    assert.equal(await redis.cmd('SISMEMBER', `${P}apps`, 'nosuchapp'), 0);
    assert.equal(await redis.cmd('EXISTS', `${P}app:nosuchapp`), 0);
  } finally {
    events.close();
  }
});

test('a write whose notice was lost reaches every instance through the version poll', { skip }, async () => {
  // what another instance writes, without the PUBLISH (as if every subscriber had been away)
  const script = "local v = redis.call('INCR', KEYS[1]); " +
    "redis.call('HSET', KEYS[2], 'mode', ARGV[1], 'version', v, 'at', ARGV[2], 'by', 'fleet-elsewhere'); " +
    "redis.call('SADD', KEYS[3], 'demo'); return v";
  await redis.cmd('EVAL', script, 3, `${P}version`, `${P}app:demo`, `${P}apps`, 'report', Date.now());
  await follows([A, B, C], 'mode', 'report', { timeout: 3500 }); // poll = 1s
  assert.equal((await A.flip({ mode: 'enforce' })).fleet, 'shared');
  await follows([A, B, C], 'mode', 'enforce');
});

// B's decisions on a fact it has cached (for an hour) are made again after a change of that
// fact passed through A. The participant is asked with an unbatched action on one socket (a
// refused one leaves the fact cached; the SDK sends participant changes as batches, after which
// syncgate drops the fact whatever was decided); the user through the SDK.
test('a participant added through A is seen by B\'s next decision, though B caches facts for an hour', { skip }, async () => {
  const me = uniqueUser('me'), bob = uniqueUser('bob'), cid = uniqueUser('conv');
  await be.seed({ appId: 'facts', users: { [me]: {}, [bob]: {} }, conversations: { [cid]: { participants: { [me]: {} } } } });
  const lookups = async () => (await be.log()).filter((e) => e.kind === 'http' && e.method === 'GET' && e.url === `/v1/facts/conversations/${cid}`).length;
  // B learns (and caches) that bob is not a participant: conversation_sync off refuses adding him
  const ws = await RawWs.open(B.port, `/v1/facts/realtime/${me}`);
  try {
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('facts', me, apps.facts) }, {}]));
    assert.equal((await ws.json(0))[1], 200);
    const add = async (seq) => { ws.sendText(JSON.stringify([seq, 'POST', `/conversations/${cid}/participants/${bob}`, {}, {}])); return ws.json(seq); };
    let a = await add(1);
    assert.equal(a[1], 403);
    assert.equal(a[2].errorCode, 'UNAUTHORIZED_TO_EDIT_PARTICIPANT');
    assert.equal(await lookups(), 1);
    assert.equal((await add(2))[1], 403, 'still refused');
    assert.equal(await lookups(), 1, 'from B\'s cache');
    // the server adds bob through A (a REST call with the secret key)
    const events = await redis.subscribe(`${P}events`);
    try {
      const forgets = await B.metric('syncgate_fleet_notices_total', 'kind="forget"');
      const res = await serverPut(A, `/v1/facts/conversations/${cid}/participants/${bob}`);
      assert.equal(res.status, 200, 'server credential: passes');
      await events.waitFor((m) => m.startsWith('forget ') && m.endsWith(` facts conversation ${cid}`), 2000);
      await until(async () => (await B.metric('syncgate_fleet_notices_total', 'kind="forget"')) > forgets, 2000, 'B never counted a forget notice');
    } finally {
      events.close();
    }
    // B's next decision looks the fact up again: bob is a participant (409, "already there")
    a = await add(3);
    assert.equal(a[1], 409, JSON.stringify(a));
    assert.equal(await lookups(), 2, 'looked up again, not from the cache');
  } finally {
    ws.destroy();
  }
});

test('a user created through A is seen by the next UserRef.createIfNotExists on B (SDK), though B cached its absence', { skip }, async () => {
  const newbie = uniqueUser('newbie');
  const lookups = async () => (await be.log()).filter((e) => e.kind === 'http' && e.method === 'GET' && e.url === `/v1/budget/users/${newbie}`).length;
  // app budget has user_sync off: creating a user from the browser needs the user to exist
  const s = sdk(B, 'budget', 'creator');
  for (let k = 0; k < 2; k++) {
    const r = await settle(() => s.user(newbie).createIfNotExists({ name: 'N' }));
    assert.equal(r.ok, false);
    assert.match(r.message, /USER_SYNC_DISABLED/);
  }
  assert.equal(await lookups(), 1, 'the absence is cached');
  const forgets = await B.metric('syncgate_fleet_notices_total', 'kind="forget"');
  assert.equal((await serverPut(A, `/v1/budget/users/${newbie}`, { name: 'Made by the server' }, apps.budget)).status, 200);
  await until(async () => (await B.metric('syncgate_fleet_notices_total', 'kind="forget"')) > forgets, 2000, 'B never counted a forget notice');
  const r = await settle(() => s.user(newbie).createIfNotExists({ name: 'N' }));
  assert.ok(r.ok, r.message);
  assert.equal(await lookups(), 2);
  assert.equal((await be.state('budget')).users[newbie].name, 'Made by the server', 'nothing was created from the browser');
});

// A REST PUT through instance I with the app's secret key.
async function serverPut(i, target, body = {}, key = apps.facts) {
  const b = JSON.stringify(body);
  const r = await rawExchange(i.port, `PUT ${target} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${key}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`, { idle: 400 });
  return parseResponses(r.data)[0];
}

test('a refusal budget counts over the fleet: one refusal on each of three instances uses 3/1m up on all', { skip }, async () => {
  // the same user on each instance (one SDK process each, as three browsers)
  const user = uniqueUser('spread');
  const r = [];
  for (const i of [A, B, C]) {
    const x = await remoteSession({ host: `127.0.0.1:${i.port}`, appId: 'budget', userId: user, key: apps.budget });
    cleanup.push(() => x.close());
    r.push(x);
  }
  const events = await redis.subscribe(`${P}events`);
  try {
    const notices = await Promise.all([A, B, C].map((i) => i.metric('syncgate_fleet_notices_total', 'kind="budget"')));
    for (const x of r) {
      const a = await x.setUser({ name: 'refused' });
      assert.equal(a.ok, false);
      assert.match(a.message, /USER_SYNC_DISABLED/, 'one refusal each: no instance is over budget alone');
    }
    // the fleet total reached 3: one instance learns it from its push and tells the others
    // (a budget notice each), within ~2 s
    const notice = await events.waitFor((m) => m.startsWith('budget ') && m.endsWith(` ${user}`), 2500);
    assert.match(notice, new RegExp(`^budget \\S+ budget \\d+ \\d+ ${user}$`));
    const [, , , until_ms, ban_ms] = notice.split(' ');
    assert.ok(Number(until_ms) > Date.now() && Number(until_ms) <= Date.now() + 60000 && Number(until_ms) % 60000 === 0, `until the window's end: ${notice}`);
    assert.equal(Number(ban_ms), 0, 'no refusal_ban, no ban');
    await until(async () => {
      const now = await Promise.all([A, B, C].map((i) => i.metric('syncgate_fleet_notices_total', 'kind="budget"')));
      return now.filter((v, k) => v > notices[k]).length >= 2;
    }, 2500, 'two instances never counted the budget notice');
    // Redis holds the window's counter
    const keys = await redis.cmd('KEYS', `${P}budget:budget:*:${user}`);
    assert.equal(keys.length, 1, JSON.stringify(keys));
    assert.equal(Number(await redis.cmd('GET', keys[0])), 3);
    const ttl = await redis.cmd('PTTL', keys[0]);
    assert.ok(ttl > 0 && ttl <= 120000, `expires after 2 windows: pttl ${ttl}`);
    // the next change on every instance is answered from memory
    for (const x of r) {
      const a = await x.setUser({ name: 'again' });
      assert.equal(a.ok, false);
      assert.match(a.message, /TOO_MANY_REFUSED_CALLS/);
    }
    // each instance logged it once, the ones told by the fleet with "fleet": true
    for (const i of [A, B, C])
      assert.equal(i.events('budget_exhausted').filter((l) => l.user === user && l.app === 'budget').length, 1, `${i.name}: one budget_exhausted line`);
    const lines = [A, B, C].map((i) => i.events('budget_exhausted').find((l) => l.user === user));
    assert.ok(lines.filter((l) => l.fleet === true).length >= 2, `learnt from the fleet: ${JSON.stringify(lines)}`);
    const conv = await r[1].run(['conversation', [uniqueUser('c')]], ['createIfNotExists', [{ subject: 's' }]]);
    assert.match(conv.message, /TOO_MANY_REFUSED_CALLS/, 'a change the switches allow is refused too');
  } finally {
    events.close();
  }
});

test('hostile notices on the channel: a budget notice for an app of no section, or an unknown kind, is ignored; one with a far future budgets for at most the window from now and bans nobody the app does not ban', { skip }, async () => {
  const before = await B.metric('syncgate_fleet_notices_total', 'kind="budget"');
  const forgets = await B.metric('syncgate_fleet_notices_total', 'kind="forget"');
  const far = String(Date.now() + 10 * 365 * 86400000), user = uniqueUser('mallory');
  await redis.cmd('PUBLISH', `${P}events`, `budget feedfacefeedface nosuchapp ${far} ${far} ${user}`);
  await redis.cmd('PUBLISH', `${P}events`, `forget feedfacefeedface demo bogus ${user}`);
  await redis.cmd('PUBLISH', `${P}events`, `budget feedfacefeedface budget ${far} ${far} ${user}`);
  await until(async () => (await B.metric('syncgate_fleet_notices_total', 'kind="budget"')) === before + 1, 2000,
    'the budget notice for app budget was not taken');
  assert.equal(await B.metric('syncgate_fleet_notices_total', 'kind="forget"'), forgets, 'a forget of an unknown kind is ignored');
  const lines = B.events('budget_exhausted').filter((l) => l.user === user);
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0].app, 'budget');
  assert.ok(lines[0].for_s <= 60, `clamped to the 1m window: ${JSON.stringify(lines[0])}`);
  assert.equal(B.events('banned').filter((l) => l.user === user).length, 0, 'app budget has no refusal_ban');
  // the user is budgeted on B now, for at most a minute: the change is answered from memory
  const s = await remoteSession({ host: `127.0.0.1:${B.port}`, appId: 'budget', userId: user, key: apps.budget });
  cleanup.push(() => s.close());
  const a = await s.setUser({ name: 'x' });
  assert.equal(a.ok, false);
  assert.match(a.message, /TOO_MANY_REFUSED_CALLS/);
});

test('Redis paused: decisions never wait on it (20 SDK calls with timeout = 10s); the admin API answers', { skip }, async () => {
  const E = await instance('e', { fleet: 'poll = 1s\ntimeout = 10s\n', stateFile: null });
  await connected(E, 1, 8000);
  const user = uniqueUser('paused');
  const s = session({ host: `127.0.0.1:${E.port}`, appId: 'facts', userId: user, key: apps.facts });
  assert.ok((await setName(s, 'warm')).ok);
  redis.pause();
  const times = [];
  try {
    await sleep(1500); // E's version poll and its queued commands now wait on Redis
    for (let k = 0; k < 20; k++) {
      const t0 = performance.now();
      // even: an allowed user change (forwarded: its fact is forgotten and published);
      // odd: a refused conversation (looked up, refused: counted for the budget)
      const r = k % 2 === 0 ? await setName(s, `n${k}`) : await settle(() => s.conversation(uniqueUser('nc')).createIfNotExists());
      times.push(performance.now() - t0);
      if (k % 2 === 0) assert.ok(r.ok, r.message);
      else assert.match(r.message, /CONVERSATION_SYNC_DISABLED/);
    }
    const t0 = performance.now();
    const rz = await E.readyz();
    assert.equal(rz.status, 200);
    assert.ok(performance.now() - t0 < 1000, '/readyz does not wait on Redis');
  } finally {
    redis.resume();
  }
  const worst = Math.max(...times);
  assert.ok(worst < 1000, `every call settles well before the fleet timeout (10 s): ${times.map((t) => t.toFixed(0)).join(' ')} ms`);
  // the budget counts queued meanwhile arrive once Redis answers again: as many as E refused
  // (the SDK's createIfNotExists sends more than one refused frame)
  const refusals = E.events('refuse').filter((l) => l.user === user).length;
  assert.ok(refusals >= 10, `${refusals} refusals`);
  let seen = [];
  await until(async () => {
    const keys = await redis.cmd('KEYS', `${P}budget:facts:*:${user}`);
    seen = await Promise.all(keys.map(async (k) => `${k}=${await redis.cmd('GET', k)}`));
    return keys.length === 1 && Number(await redis.cmd('GET', keys[0])) === refusals;
  }, 5000, () => `the ${refusals} refusals were not counted in Redis after the pause: ${JSON.stringify(seen)}`);
  await Promise.all([A, B, C, E].map((i) => connected(i, 1, 12000)));
});

// ---- Redis down ----

test('Redis killed: switches keep their values, flips are local and not shared, /readyz is stale; a fresh instance starts from the state_file; Redis back: the newer local flip reaches everyone', { skip }, async () => {
  // a fleet value the files do not hold, in B's state_file too
  assert.equal((await A.flip({ conversation_sync: 'off' })).fleet, 'shared');
  await follows([B, C], 'conversation_sync', 'off');
  await until(() => {
    try { return holds(JSON.parse(fs.readFileSync(B.stateFile, 'utf8')), 'conversation_sync', 'off'); } catch { return false; }
  }, 3000, `B's state_file ${B.stateFile} never held conversation_sync off`);
  const sB = sdk(B, 'demo', 'downB'), sA = sdk(A, 'demo', 'downA');
  assert.ok((await setName(sA)).ok);
  assert.ok((await setName(sB)).ok);

  const killedAt = Date.now();
  await redis.kill();
  await Promise.all([A, B, C].map((i) => connected(i, 0, 3000)));
  for (const i of [A, B, C]) assert.ok(i.events('fleet_disconnected').length >= 1, `${i.name}: a fleet_disconnected line`);
  // the last known state stays
  for (const i of [B, C]) assert.equal((await i.app()).conversation_sync, 'off', `${i.name} keeps the fleet's value`);
  const conv = await settle(() => sB.conversation(uniqueUser('c')).createIfNotExists({ subject: 's' }));
  assert.match(conv.message, /CONVERSATION_SYNC_DISABLED/);
  // ready, and says since when the state is stale
  for (const i of [A, B, C]) {
    const r = await i.readyz();
    assert.equal(r.status, 200, `${i.name}: Redis down is no reason to take traffic away`);
    const m = /^stale since (.*)$/.exec(r.json.fleet);
    assert.ok(m, `${i.name}: readyz fleet = ${r.json.fleet}`);
    assert.match(m[1], ISO_SECOND);
    const since = Date.parse(m[1]);
    assert.ok(since <= Date.now() && since >= killedAt - 5000, `stale since ${m[1]} (killed at ${new Date(killedAt).toISOString()})`);
    const st = (await i.admin('GET', '/stats')).json.fleet;
    assert.equal(st.connected, false);
    assert.equal(st.stale_since, m[1]);
  }
  const age = await B.metric('syncgate_fleet_state_age_seconds');
  await sleep(1200);
  assert.ok(await B.metric('syncgate_fleet_state_age_seconds') > age, 'the state ages');
  // a flip applies locally at once and says it was not shared
  const r = await A.flip({ user_sync: 'off' });
  assert.equal(r.user_sync, 'off');
  assert.match(r.fleet, /^not shared: redis unreachable/);
  assert.match(A.events('admin_change').at(-1).fleet, /^not shared: redis unreachable/);
  const refused = await setName(sA, 'local');
  assert.equal(refused.ok, false);
  assert.match(refused.message, /USER_SYNC_DISABLED/);
  assert.ok((await setName(sB, 'elsewhere')).ok, 'not shared: B still allows');
  assert.equal((await B.app()).user_sync, 'on');

  // a fresh instance, started while Redis is down, from B's state_file
  const savedAt = JSON.parse(fs.readFileSync(B.stateFile, 'utf8')).saved_at;
  await sleep(1100);
  const D = await instance('d', { stateFile: B.stateFile });
  await until(() => D.events('fleet_state_file').length > 0, 2000, 'D logged no fleet_state_file line');
  assert.equal(D.events('fleet_state_file')[0].path, B.stateFile);
  const d = await D.app();
  assert.equal(d.conversation_sync, 'off', 'the state_file\'s value, not the file\'s');
  assert.equal(d.user_sync, 'on', 'A\'s flip was never shared');
  const sD = sdk(D, 'demo', 'fresh');
  assert.match((await settle(() => sD.conversation(uniqueUser('c')).createIfNotExists({ subject: 's' }))).message, /CONVERSATION_SYNC_DISABLED/);
  assert.ok((await setName(sD)).ok);
  assert.equal(await D.metric('syncgate_fleet_connected'), 0);
  assert.equal((await D.readyz()).status, 200);
  // its state is as old as the file: stale since it was saved, not since D started
  assert.equal((await D.readyz()).json.fleet, `stale since ${new Date(Math.floor(savedAt / 1000) * 1000).toISOString().replace('.000Z', 'Z')}`);
  assert.ok(await D.metric('syncgate_fleet_state_age_seconds') >= 1, 'the state_file\'s age');

  // Redis back (empty: nothing was persisted): everyone resyncs, A's pending flip is newer
  // than anything the fleet holds and reaches the others
  await redis.restart();
  await Promise.all([A, B, C, D].map((i) => connected(i, 1, 12000)));
  await until(() => A.events('fleet_resync_pushed').some((l) => l.app === 'demo'), 3000, 'A logged no fleet_resync_pushed for demo');
  assert.equal(await redis.cmd('HGET', `${P}app:demo`, 'user_sync'), 'off');
  assert.equal(await redis.cmd('HGET', `${P}app:demo`, 'by'), 'fleet-a');
  await follows([B, C, D], 'user_sync', 'off', { timeout: 3000 });
  assert.match((await setName(sB, 'after')).message, /USER_SYNC_DISABLED/);
  for (const i of [A, B, C, D]) assert.equal((await i.readyz()).json.fleet, 'ok');

  // back to the files' values, shared
  const back = await A.flip({ user_sync: 'on', conversation_sync: 'on' });
  assert.equal(back.fleet, 'shared');
  await follows([B, C, D], 'user_sync', 'on');
  await follows([B, C, D], 'conversation_sync', 'on');
  await D.stop();
});

// True when some object inside V has KEY = VALUE (the state_file's layout is the fleet's).
function holds(v, key, value) {
  if (!v || typeof v !== 'object') return false;
  if (v[key] === value) return true;
  return Object.values(v).some((x) => holds(x, key, value));
}

test('newest wins at the resync: an instance cut off alone drops its older flip and pushes its newer one', { skip }, async () => {
  const relay = await startForwarder(redis.port);
  cleanup.push(() => relay.stop());
  const Q = await instance('q', { redisAddr: `127.0.0.1:${relay.port}`, stateFile: null });
  await connected(Q, 1, 8000);
  // older: Q flips alone, then B writes the same switch through the fleet
  await relay.cut();
  await connected(Q, 0, 3000);
  assert.match((await Q.flip({ user_sync: 'off' })).fleet, /^not shared/);
  await sleep(20);
  assert.equal((await B.flip({ user_sync: 'on' })).fleet, 'shared');
  await relay.restore();
  await connected(Q, 1, 12000);
  await follows([Q], 'user_sync', 'on', { timeout: 3000 });
  assert.ok(!Q.events('fleet_resync_pushed').some((l) => l.app === 'demo'), 'the older flip was dropped, not pushed');
  await follows([A, C], 'user_sync', 'on');
  // newer: B writes first, then Q flips alone
  await relay.cut();
  await connected(Q, 0, 3000);
  assert.equal((await B.flip({ user_sync: 'off' })).fleet, 'shared');
  await follows([A, C], 'user_sync', 'off');
  await sleep(20);
  assert.match((await Q.flip({ user_sync: 'on' })).fleet, /^not shared/);
  await relay.restore();
  await connected(Q, 1, 12000);
  await until(() => Q.events('fleet_resync_pushed').some((l) => l.app === 'demo'), 3000, 'Q did not push its newer flip');
  await follows([A, B, C], 'user_sync', 'on', { timeout: 3000 });
  // per switch: Q flips one switch alone, B later another of the same app: both are kept
  // (an older flip of one switch does not undo a newer one of the other, nor the reverse)
  await relay.cut();
  await connected(Q, 0, 3000);
  const pushed = Q.events('fleet_resync_pushed').length;
  assert.match((await Q.flip({ conversation_sync: 'off' })).fleet, /^not shared/);
  await sleep(20);
  assert.equal((await B.flip({ user_sync: 'off' })).fleet, 'shared');
  await relay.restore();
  await connected(Q, 1, 12000);
  await until(() => Q.events('fleet_resync_pushed').length > pushed, 3000, 'Q did not push its conversation_sync flip');
  await follows([A, B, C, Q], 'conversation_sync', 'off', { timeout: 3000 });
  await follows([A, B, C, Q], 'user_sync', 'off', { timeout: 3000 });
  const h = hash(await redis.cmd('HGETALL', `${P}app:demo`));
  assert.deepEqual([h.user_sync, h.conversation_sync], ['off', 'off']);
  assert.ok(Number(h['at:user_sync']) > Number(h['at:conversation_sync']), 'each switch keeps its own time');
  assert.equal((await A.flip({ user_sync: 'on', conversation_sync: 'on' })).fleet, 'shared');
  await follows([B, C, Q], 'conversation_sync', 'on');
  await Q.stop();
});

// ---- key_prefix and password_file ----

test('key_prefix and password_file: the right password shares under the prefix; a wrong one is a fleet_error and decisions go on', { skip }, async () => {
  const PW = 'fleet-pw-Zq81x';
  const locked = await startRedis({ password: PW });
  cleanup.push(() => locked.stop());
  const good = path.join(work, 'redis-password'), bad = path.join(work, 'redis-password-wrong');
  fs.writeFileSync(good, `${PW}\n`);
  fs.writeFileSync(bad, 'not-the-password\n');
  const prefix = 'sgtest.fleet:';
  const F = await instance('f', { redisAddr: `127.0.0.1:${locked.port}`, stateFile: null, fleet: `key_prefix = ${prefix}\npassword_file = ${good}\n` });
  const G = await instance('g', { redisAddr: `127.0.0.1:${locked.port}`, stateFile: null, fleet: `key_prefix = ${prefix}\npassword_file = ${bad}\n` });
  await connected(F, 1, 8000);
  assert.equal((await F.flip({ user_sync: 'off' })).fleet, 'shared');
  assert.equal(await locked.cmd('HGET', `${prefix}app:demo`, 'user_sync'), 'off');
  assert.ok(Number(await locked.cmd('GET', `${prefix}version`)) >= 1);
  assert.deepEqual(await locked.cmd('KEYS', 'syncgate:*'), [], 'nothing under the default prefix');
  // G cannot authenticate: a fleet_error, not connected, its own file's switches
  await until(() => G.events('fleet_error').length > 0, 5000, 'G logged no fleet_error');
  assert.match(G.events('fleet_error')[0].why, /WRONGPASS|invalid|auth/i);
  assert.equal(await G.metric('syncgate_fleet_connected'), 0);
  assert.ok(await G.metric('syncgate_fleet_errors_total') >= 1);
  assert.equal((await G.readyz()).status, 200);
  const sG = sdk(G, 'demo', 'nopw'), sF = sdk(F, 'demo', 'pw');
  assert.ok((await setName(sG)).ok, 'G decides by its file: user_sync on');
  assert.match((await setName(sF)).message, /USER_SYNC_DISABLED/);
  assert.match((await G.flip({ conversation_sync: 'off' })).fleet, /^not shared/);
  assert.match((await settle(() => sG.conversation(uniqueUser('c')).createIfNotExists({ subject: 's' }))).message, /CONVERSATION_SYNC_DISABLED/, 'the local flip applies');
  // no password in any line
  for (const i of [F, G]) {
    assert.ok(!i.stderr().includes(PW), `${i.name} logged the password`);
    assert.ok(!i.stderr().includes('not-the-password'), `${i.name} logged the password`);
  }
  await F.stop();
  await G.stop();
});
