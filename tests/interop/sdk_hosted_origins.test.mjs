// Named upstreams and routes (#17) in front of a hosted-style service: one reference backend
// stands up three origins the way TalkJS hosts realtime.talkjs.com, app.talkjs.com and
// api.talkjs.com (here realtime.talkjs.test, app.talkjs.test, api.talkjs.test; the api origin
// over TLS, verified by its name). Each origin answers only its own layout and insists on its
// Host (tests/backend/server.js --origin), so a request syncgate sends to the wrong upstream,
// with the wrong path or the wrong Host shows up in the backend's log as WRONG_ORIGIN or
// WRONG_HOST. The real @talkjs/core SDK talks to syncgate as to a custom host
// (/public_api/v1, /api/v0); syncgate's routes send each part to its origin, rewriting
// /public_api/v1 to /v1, and looks facts up on the api origin (lookup_upstream = rest).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { SYNCGATE, startBackend, startSyncgate, sleep } from '../lib/harness.mjs';
import { loadPki } from '../lib/tlsca.mjs';
import { userToken } from '../lib/rawws.mjs';
import { defineScenarios, mayPass } from './sdk_scenarios.mjs';
import { session, uniqueUser, firstSnapshot, settle, sent } from './sdk.mjs';

assert.ok(process.env.SG_TEST_PKI, 'run through ctest (it makes the test PKI)');
const pki = loadPki(process.env.SG_TEST_PKI);
assert.ok(pki.hosted, 'the test PKI has no certificate for the hosted names: remake it (node tests/lib/tlsca.mjs --out DIR)');

const RT_HOST = 'realtime.talkjs.test', APP_HOST = 'app.talkjs.test', API_HOST = 'api.talkjs.test';
const combos = [[1, 1], [1, 0], [0, 1], [0, 0]];
const appOf = ([u, c]) => `h_u${u}_c${c}`;
const keyOf = (app) => `sk_test_${app}`;
const OPEN = appOf([1, 1]), SHUT = appOf([0, 0]);

let be, sg, direct;
before(async () => {
  // the baseline: the SDK straight against three origins (no Host to insist on: the SDK sends
  // the address), as it talks to TalkJS's hosted service
  direct = await startBackend({ apps: { [OPEN]: keyOf(OPEN) }, origins: [{ kind: 'realtime' }, { kind: 'app' }, { kind: 'rest' }] });
  be = await startBackend({
    apps: Object.fromEntries(combos.map((c) => [appOf(c), keyOf(appOf(c))])),
    origins: [{ kind: 'realtime', host: RT_HOST }, { kind: 'app', host: APP_HOST }, { kind: 'rest', host: API_HOST, tls: pki.hosted }],
  });
  // [syncgate]'s own key first (the harness writes the section's head); the default upstream
  // is the backend's main listener, which no request of this file should ever reach.
  const conf = 'lookup_upstream = rest\n' +
    `[upstream:realtime]\nurl = http://127.0.0.1:${be.origins.realtime}\nhost = ${RT_HOST}\n` +
    `[upstream:app]\nurl = http://127.0.0.1:${be.origins.app}\nhost = ${APP_HOST}\n` +
    `[upstream:rest]\nurl = https://127.0.0.1:${be.origins.rest}\nhost = ${API_HOST}\nsni = ${API_HOST}\nca_file = ${pki.ca}\n` +
    '[route:hosted-realtime]\nmatch = GET /public_api/v1/{app}/realtime/{user}\nupstream = realtime\nrewrite = /v1/{app}/realtime/{user}\nsync = realtime\n' +
    '[route:hosted-rest]\nmatch = * /public_api/v1/{app}/{*}\nupstream = rest\nrewrite = /v1/{app}/{*}\n' +
    '[route:hosted-app]\nmatch = * /api/v0/{app}/{*}\nupstream = app\n' +
    combos.map((c) => `[app:${appOf(c)}]\nuser_sync = ${c[0] ? 'on' : 'off'}\nconversation_sync = ${c[1] ? 'on' : 'off'}\nsecret_key = ${keyOf(appOf(c))}\n`).join('') +
    '[limits]\nshutdown_grace = 500ms\n';
  sg = await startSyncgate(be.port, conf);
});
after(async () => { await sg?.stop(); await be?.stop(); await direct?.stop(); setTimeout(() => process.exit(), 200).unref(); });

const host = () => `127.0.0.1:${sg.port}`;
const httpLog = async () => (await be.log()).filter((e) => e.kind === 'http');
const header = (e, name) => { for (let i = 0; i < e.rawHeaders.length; i += 2) if (e.rawHeaders[i].toLowerCase() === name) return e.rawHeaders[i + 1]; return undefined; };
const where = (e) => `${e.origin} ${e.host} ${e.method} ${e.url}${e.refused ? ` (${e.refused})` : ''}`;

test('the route table: -T lists the hosted routes in place of the built-ins they share a match with; -t runs route tests', () => {
  const conf = fs.readFileSync(sg.file, 'utf8');
  const table = spawnSync(SYNCGATE, ['-T', '-c', sg.file], { encoding: 'utf8' });
  assert.equal(table.status, 0, table.stderr);
  const names = table.stdout.split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.split(/\s+/)[0]);
  for (const n of ['hosted-realtime', 'hosted-rest', 'hosted-app', 'talkjs-realtime', 'talkjs-rest']) assert.ok(names.includes(n), `${n} in\n${table.stdout}`);
  for (const n of ['talkjs-realtime-custom', 'talkjs-rest-custom', 'talkjs-api']) assert.ok(!names.includes(n), `${n} is replaced:\n${table.stdout}`);
  assert.ok(names.indexOf('hosted-realtime') < names.indexOf('hosted-rest'), 'the realtime route (3 literal segments) before the REST one (2)');
  const file = path.join(sg.dir, 'route-test.conf');
  fs.writeFileSync(file, `${conf}[route-test]\n` +
    `GET /public_api/v1/${OPEN}/realtime/alice -> route=hosted-realtime sync=realtime upstream=realtime rewrite=/v1/${OPEN}/realtime/alice\n` +
    `PUT /public_api/v1/${OPEN}/users/alice -> route=hosted-rest sync=talkjs upstream=rest rewrite=/v1/${OPEN}/users/alice\n` +
    `GET /api/v0/${OPEN} -> route=hosted-app sync=talkjs upstream=app\n` +
    `GET /api/v0/${OPEN}/bokens/alice -> route=hosted-app sync=talkjs upstream=app\n` +
    `GET /v1/${OPEN}/realtime/alice -> route=talkjs-realtime upstream=default\n`);
  const t = spawnSync(SYNCGATE, ['-t', '-c', file], { encoding: 'utf8' });
  assert.equal(t.status, 0, t.stderr);
});

// The origins are a faithful fixture: the SDK suite passes straight against them...
defineScenarios('baseline, the SDK straight to the three origins', () => ({
  appId: OPEN, key: keyOf(OPEN),
  apiUrls: {
    realtimeWsApiUrl: `ws://127.0.0.1:${direct.origins.realtime}/v1`,
    internalHttpApiUrl: `http://127.0.0.1:${direct.origins.app}/api/v0`,
    restApiHttpUrl: `http://127.0.0.1:${direct.origins.rest}/v1`,
  },
}), 'signature');
test('baseline: no origin refused anything the SDK sent it', async () => {
  const log = await direct.log();
  assert.ok(log.some((e) => e.origin === 'realtime') && log.some((e) => e.origin === 'app'));
  assert.deepEqual(log.filter((e) => e.refused || e.origin === 'main').map(where), []);
});

// ...and, through syncgate with both switches on, every call resolves as it does there.
defineScenarios('hosted origins', () => ({ host: host(), appId: OPEN, key: keyOf(OPEN) }), 'token');
defineScenarios('hosted origins', () => ({ host: host(), appId: OPEN, key: keyOf(OPEN) }), 'signature');

for (const combo of combos) {
  const [us, cs] = combo;
  test(`switch matrix through the hosted origins: user_sync=${us ? 'on' : 'off'} conversation_sync=${cs ? 'on' : 'off'}`, async () => {
    const appId = appOf(combo), key = keyOf(appId);
    const me = uniqueUser('me'), bob = uniqueUser('bob'), known = uniqueUser('known'), conv = uniqueUser('cx');
    const newUser = uniqueUser('new'), setConv = uniqueUser('sc'), newConv = uniqueUser('nc'), np = uniqueUser('np');
    await be.seed({ appId, users: { [me]: { name: 'Me' }, [bob]: { name: 'Bob' }, [known]: { name: 'Known' } },
      conversations: { [conv]: { subject: 'Seeded', participants: { [me]: {}, [bob]: {} } } } });
    const s = session({ host: host(), appId, userId: me, key });
    const cx = s.conversation(conv);
    const U = us ? null : 'USER_SYNC_DISABLED', P = cs ? null : 'UNAUTHORIZED_TO_EDIT_PARTICIPANT';
    let msg;
    const calls = [
      ['UserRef.set', () => s.currentUser.set({ name: 'Renamed' }), U],
      ['UserRef.createIfNotExists (new user)', () => s.user(newUser).createIfNotExists({ name: 'New' }), U],
      ['UserRef.createIfNotExists (existing user)', () => s.user(known).createIfNotExists({ name: 'Other' }), null],
      ['UserRef.get', async () => assert.equal((await s.user(bob).get()).name, 'Bob'), null],
      ['ConversationRef.set (new)', () => s.conversation(setConv).set({ subject: 'Set' }), cs ? null : 'UNAUTHORIZED_TO_EDIT'],
      ['ConversationRef.createIfNotExists (new)', () => s.conversation(newConv).createIfNotExists({ subject: 'Created' }), cs ? null : 'CONVERSATION_SYNC_DISABLED'],
      ['ConversationRef.createIfNotExists (existing, me a participant)', () => cx.createIfNotExists({ subject: 'ignored' }), null],
      ['ConversationRef.get', async () => assert.equal((await cx.get()).subject, 'Seeded'), null],
      ['ConversationRef.send', async () => { msg = await cx.send('hello'); }, null],
      ['ConversationRef.markAsRead', () => cx.markAsRead(), null],
      // (subscribed before the edit, as sdk_switch_matrix does: a message list subscribed
      // after an edit may stay at the SDK's cached first version for seconds, though the
      // backend's message.edited was relayed)
      ['ConversationRef.subscribeMessages', () => firstSnapshot((cb) => cx.subscribeMessages(cb), (x) => x && x.length === 1 && x[0].plaintext === 'hello'), null],
      ['MessageRef.edit', () => msg.edit('hello, edited'), null],
      ['ParticipantRef.set (other user, access)', () => cx.participant(bob).set({ access: 'Read' }), P],
      ['ParticipantRef.createIfNotExists (new participant)', () => cx.participant(np).createIfNotExists({}), P],
      ['ParticipantRef.delete (other user)', () => cx.participant(bob).delete(), P],
    ];
    const failures = [];
    for (const [name, f, code] of calls) {
      const r = await settle(f);
      if (code === null && !r.ok) failures.push(`${name}: rejected: ${r.message}`);
      if (code !== null) {
        if (r.ok) failures.push(`${name}: resolved, expected ${code}`);
        else if (!r.message.includes(code) || !r.message.includes(appId)) failures.push(`${name}: ${r.message}`);
      }
    }
    assert.deepEqual(failures, []);
    await sleep(300);

    // what was allowed is in the backend's state, what was refused is not
    const st = await be.state(appId);
    assert.equal(st.users[me].name, us ? 'Renamed' : 'Me');
    assert.equal(!!st.users[newUser], !!us, 'the new user exists iff user sync is on');
    assert.equal(st.users[known].name, 'Known', 'createIfNotExists of an existing user changed nothing');
    assert.equal(!!st.conversations[setConv], !!cs, 'ConversationRef.set made a conversation iff conversation sync is on');
    assert.equal(!!st.conversations[newConv], !!cs);
    const c = st.conversations[conv];
    assert.equal(c.subject, 'Seeded');
    assert.equal(c.messages.length, 1, 'the message was sent (and edited) whatever the switches');
    if (cs) {
      assert.equal(c.participants[bob], undefined, 'bob was removed');
      assert.ok(c.participants[np], 'the new participant was added');
    } else {
      assert.equal(c.participants[bob].access, 'ReadWrite', 'bob is as he was');
      assert.equal(c.participants[np], undefined);
    }

    // the realtime socket went to the realtime origin, rewritten, with its Host; the backend
    // received exactly the frames that may pass, in order
    const log = await be.log();
    const upgrades = log.filter((e) => e.kind === 'http' && e.url.includes(`/realtime/${me}`));
    assert.ok(upgrades.length >= 1, 'the socket reached the backend');
    for (const e of upgrades) {
      assert.equal(`${e.origin} ${e.host} ${e.method}`, `realtime ${RT_HOST} GET`, where(e));
      assert.match(e.url, new RegExp(`^/v1/${appId}/realtime/${me}\\?talkjs-`), 'rewritten to /v1, the query kept');
      assert.equal(e.refused, undefined, where(e));
    }
    const mine = (t) => t.url.includes(`/${appId}/realtime/${me}`);
    const expected = sent.filter(mine).map((t) => t.text).filter((t) => mayPass(t, combo));
    const frames = log.filter((e) => e.kind === 'ws' && e.appId === appId && e.user === me);
    assert.ok(frames.every((e) => e.origin === 'realtime'));
    assert.deepEqual(frames.map((e) => Buffer.from(e.raw, 'base64').toString('utf8')), expected);

    // createIfNotExists with a switch off was decided on lookups made on the api origin
    const lookups = (p) => log.filter((e) => e.kind === 'http' && e.method === 'GET' && e.url === p);
    const wanted = [];
    if (!us) wanted.push(`/v1/${appId}/users/${known}`, `/v1/${appId}/users/${newUser}`);
    if (!cs) wanted.push(`/v1/${appId}/conversations/${conv}`, `/v1/${appId}/conversations/${newConv}`);
    for (const p of wanted) {
      const l = lookups(p);
      assert.ok(l.length >= 1, `a lookup of ${p}`);
      for (const e of l) {
        assert.equal(`${e.origin} ${e.host}`, `rest ${API_HOST}`, where(e));
        assert.equal(header(e, 'authorization'), `Bearer ${key}`, 'with the app\'s secret key');
        assert.equal(e.refused, undefined);
      }
    }
  });
}

test('REST with the secret key: /public_api/v1/{app}/... reaches the api origin as /v1/{app}/..., query kept; browser fetches too', async () => {
  const key = keyOf(SHUT), uid = uniqueUser('rest'), me = uniqueUser('me');
  const base = `http://${host()}/public_api/v1/${SHUT}`;
  const auth = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
  // a server credential passes whatever the switches (both are off for this app)
  let r = await fetch(`${base}/users/${uid}`, { method: 'PUT', headers: auth, body: '{"name":"Via REST"}' });
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal((await be.state(SHUT)).users[uid].name, 'Via REST');
  r = await fetch(`${base}/users/${uid}?probe=1`, { headers: auth });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).name, 'Via REST');
  const rest = (await httpLog()).filter((e) => e.url.includes(uid));
  assert.deepEqual(rest.map(where), [`rest ${API_HOST} PUT /v1/${SHUT}/users/${uid}`, `rest ${API_HOST} GET /v1/${SHUT}/users/${uid}?probe=1`]);
  assert.ok(rest.every((e) => header(e, 'authorization') === `Bearer ${key}`), 'the credential passed unchanged');
  assert.equal(Buffer.from(rest[0].body, 'base64').toString(), '{"name":"Via REST"}', 'the body byte for byte');

  // U5 (search) and U4 (file upload) with a user token: browser fetches to the REST base
  const ut = { Authorization: `Bearer ${userToken(SHUT, me, key)}` };
  r = await fetch(`${base}/me/messages/search?q=${me}`, { headers: ut });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse((await r.text()).trim()), { type: 'done' });
  const form = new FormData();
  form.append('file', new Blob(['hello file']), 'hello.txt');
  r = await fetch(`${base}/files?for=${me}`, { method: 'POST', headers: ut, body: form });
  assert.equal(r.status, 200);
  assert.match((await r.json()).fileToken, /^[0-9a-f]+$/);
  const fetches = (await httpLog()).filter((e) => e.url.includes(me));
  assert.deepEqual(fetches.map(where), [`rest ${API_HOST} GET /v1/${SHUT}/me/messages/search?q=${me}`, `rest ${API_HOST} POST /v1/${SHUT}/files?for=${me}`]);
});

test('the app origin got the app check and the signature exchange, the realtime origin the socket, each with its Host', async () => {
  const me = uniqueUser('sig');
  await be.seed({ appId: OPEN, users: { [me]: { name: 'Signed' } } });
  const s = session({ host: host(), appId: OPEN, userId: me, key: keyOf(OPEN), auth: 'signature' });
  assert.equal((await s.currentUser.get()).name, 'Signed');
  await sleep(200);
  const log = await httpLog();
  const check = log.filter((e) => e.url === `/api/v0/${OPEN}`);
  assert.ok(check.length >= 1, 'U2, the app id check');
  assert.ok(check.every((e) => e.origin === 'app' && e.host === APP_HOST), check.map(where).join('\n'));
  const boken = log.filter((e) => e.url.startsWith(`/api/v0/${OPEN}/bokens/${me}?signature=`));
  assert.ok(boken.length >= 1, 'U3, the signature exchange');
  assert.ok(boken.every((e) => e.origin === 'app' && e.host === APP_HOST), boken.map(where).join('\n'));
  const socket = log.filter((e) => e.url.startsWith(`/v1/${OPEN}/realtime/${me}?`));
  assert.ok(socket.length >= 1, 'U1, the socket');
  assert.ok(socket.every((e) => e.origin === 'realtime' && e.host === RT_HOST && /websocket/i.test(header(e, 'upgrade') || '')), socket.map(where).join('\n'));
  const renew = (await be.log()).filter((e) => e.kind === 'ws' && e.user === me && Buffer.from(e.raw, 'base64').toString().includes('"/session/renew"'));
  assert.ok(renew.length >= 1 && renew.every((e) => e.origin === 'realtime'), 'the session was renewed over the realtime origin');
});

test('nothing went astray: no origin refused a request, the main listener got none, TLS to the api origin named it', async () => {
  const log = await be.log();
  assert.ok(log.filter((e) => e.kind === 'http').length > 10, `the tests above made traffic (${log.filter((e) => e.kind === 'http').length} requests)`);
  assert.deepEqual(log.filter((e) => e.refused).map(where), [], 'no WRONG_ORIGIN / WRONG_HOST');
  assert.deepEqual(log.filter((e) => e.origin === 'main').map((e) => e.kind === 'http' ? where(e) : e.kind), [], 'the default upstream is not used by these routes');
  assert.deepEqual(log.filter((e) => e.kind === 'tls-error'), []);
  const hs = log.filter((e) => e.kind === 'tls');
  assert.ok(hs.length >= 1, 'syncgate spoke TLS to the api origin');
  assert.ok(hs.every((e) => e.origin === 'rest' && e.servername === API_HOST), JSON.stringify(hs.slice(0, 3)));
  const byOrigin = (o) => log.filter((e) => e.kind === 'http' && e.origin === o);
  assert.ok(byOrigin('realtime').every((e) => /^\/v1\/[^/]+\/realtime\/[^/?]+\?/.test(e.url)), 'the realtime origin got only sockets');
  assert.ok(byOrigin('app').every((e) => e.url.startsWith('/api/v0/')));
  assert.ok(byOrigin('rest').every((e) => /^\/v1\/[^/]+\//.test(e.url) && !/^\/v1\/[^/]+\/realtime\//.test(e.url)));
});

// Last (it makes the backend log refusals): the origins do turn away what is not theirs, so
// the test above would have seen a request sent to the wrong place.
test('the backend\'s origins refuse a wrong path (404 WRONG_ORIGIN) and a wrong Host (421 WRONG_HOST)', async () => {
  // node:http, not fetch: fetch sets Host itself
  const get = (port, p, h) => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, headers: { Host: h }, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve(`${res.statusCode} ${JSON.parse(Buffer.concat(chunks)).errorCode}`));
    }).on('error', reject);
  });
  const seen = (await be.log()).length;
  assert.equal(await get(be.origins.app, `/public_api/v1/${OPEN}/users/x`, APP_HOST), '404 WRONG_ORIGIN');
  assert.equal(await get(be.origins.app, `/api/v0/${OPEN}`, API_HOST), '421 WRONG_HOST');
  assert.equal(await get(be.origins.realtime, `/v1/${OPEN}/realtime/x`, RT_HOST), '404 WRONG_ORIGIN', 'not an upgrade');
  assert.equal(await get(be.origins.rest, `/v1/${OPEN}/users/x`, API_HOST).catch((e) => e.code), 'ECONNRESET', 'the api origin speaks TLS only');
  const log = (await be.log()).slice(seen);
  assert.deepEqual(log.filter((e) => e.refused).map((e) => `${e.origin} ${e.refused}`), ['app WRONG_ORIGIN', 'app WRONG_HOST', 'realtime WRONG_ORIGIN']);
});
