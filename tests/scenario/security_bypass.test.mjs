// Issue 15: an adversarial suite. Every probe tries to get a forbidden mutation to the backend
// of app tApp (user and conversation sync both off) past syncgate. The backend is the lenient
// recording backend of tests/lib/lenient.mjs, and the oracle reads what it received in every
// plausible way (case-insensitive path words, `;params` stripped, per-segment decoding,
// `_` read as `-` in header names, pipelined bodies, method overrides, JSON-unescaped frames):
// no reading may be a forbidden mutation. Each probe also asserts syncgate's own answer.
//
// Classes: a. Connection naming framing / routing headers; b. realtime upgrades whose ids do not
// fit; c. shapes syncgate does not recognise (case, `;`, escapes, methods, overrides,
// /api/v0 mutations, odd app ids; inside frames too); d. the boken exchange with
// identity = require; e. two Authorization headers; f. framing toward the backend (chunked
// spelling, header names with `_`, underscore_headers). The control set must pass
// byte for byte, so the suite cannot pass by refusing everything.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startSyncgate, parseResponses, sleep } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { startLenientBackend, violations, signatureOf, parseStream } from '../lib/lenient.mjs';

const SK = 'sk_test_tApp';
const CTX = { app: 'tApp', secret: SK };
const CTX_REQUIRE = { ...CTX, identityRequire: true };
const UT = userToken('tApp', 'alice', SK); // a user token: a browser credential
const OT = userToken('otherApp', 'bob', 'sk_test_other');
const APPS = `[app:*]\nuser_sync = on\nconversation_sync = on\n[app:tApp]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${SK}\n`;
const APPS_REQUIRE = `${APPS}identity = require\n`;
const FWD = 'X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nForwarded: for=127.0.0.1;proto=http\r\n';
const T = { timeout: 15000 };

let be, sg;
before(async () => {
  be = await startLenientBackend();
  sg = await startSyncgate(be.port, APPS);
});
after(async () => { await sg?.stop(); await be?.stop(); });

// ---- helpers ----

// An HTTP/1.1 request: HEADERS are 'Name: value' lines; a BODY gets a Content-Length unless
// the headers already frame it (or cl is false).
function req(method, target, { headers = [], body = '', auth = UT, cl = true, version = '1.1' } = {}) {
  const lines = [`${method} ${target} HTTP/${version}`, 'Host: sg.test'];
  if (auth) lines.push(`Authorization: Bearer ${auth}`);
  lines.push(...headers);
  const b = Buffer.from(body);
  const framed = headers.some((h) => /^(content-length|transfer-encoding):/i.test(h));
  if (cl && b.length && !framed) lines.push(`Content-Length: ${b.length}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), b]);
}
const chunked = (s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from(b.length.toString(16) + '\r\n'), b, Buffer.from('\r\n0\r\n\r\n')]); };

// Complete responses at the front of BUF.
function completeResponses(buf, headOnly) {
  let n = 0, off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) return n;
    const head = buf.toString('latin1', off, end);
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    const len = m && !headOnly ? Number(m[1]) : 0;
    if (buf.length < end + 4 + len) return n;
    off = end + 4 + len;
    n++;
  }
}

// Sends BYTES on a new connection; resolves with the answers once WANT are complete (and
// QUIET ms passed with nothing more), the peer closed, or TIMEOUT ms passed.
function exchange(port, bytes, { want = 1, timeout = 1500, quiet = 60 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    let closed = false, done = false, qt;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(t); clearTimeout(qt);
      s.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, closed, rs: parseResponses(data) });
    };
    const t = setTimeout(finish, timeout);
    const headOnly = Buffer.from(bytes).subarray(0, 5).toString('latin1') === 'HEAD ';
    s.on('data', (d) => {
      chunks.push(d);
      if (completeResponses(Buffer.concat(chunks), headOnly) >= want) { clearTimeout(qt); qt = setTimeout(finish, quiet); }
    });
    s.on('end', () => { closed = true; finish(); });
    s.on('close', () => { closed = true; finish(); });
    s.on('error', () => { closed = true; finish(); });
    s.on('connect', () => s.write(bytes));
  });
}

const show = (buf) => buf.toString('latin1').slice(0, 300).replace(/\r\n/g, '\\r\\n');

// Syncgate's own refusal: one of STATUSES with the SDK's {errorCode, reasons} JSON body.
function assertRefusal(r, statuses, data) {
  assert.ok(r, `no answer from syncgate; got: ${show(data ?? Buffer.alloc(0))}`);
  assert.ok(statuses.includes(r.status), `status ${r.status}, wanted one of ${statuses}: ${show(data ?? Buffer.alloc(0))}`);
  assert.match(r.h('content-type') || '', /json/);
  const j = JSON.parse(r.body.toString());
  assert.equal(typeof j.errorCode, 'string');
  assert.ok(Array.isArray(j.reasons) && j.reasons.length > 0 && j.reasons.every((x) => typeof x === 'string'), 'reasons');
}

// The oracle: nothing the backend received reads as a forbidden mutation.
function assertClean(ctx = CTX) {
  const v = violations(be.records(), ctx);
  assert.deepEqual(v.map((x) => x.why), [], 'the backend received a forbidden mutation');
}
const backendHttp = () => Buffer.concat(be.records().map((r) => r.http));

// One HTTP probe on a fresh backend record.
async function probe(port, bytes, opts = {}) {
  await be.reset();
  const res = await exchange(port, bytes, opts);
  await sleep(40); // let anything still on its way reach the backend
  return res;
}

// A refused HTTP request: STATUSES with the error body, and nothing forbidden at the backend.
// EMPTY: not one byte of it may reach the backend. OR_CLEAN: forwarding is acceptable if the
// oracle finds nothing (e.g. a header syncgate may remove instead of refusing).
async function expectRefused(port, bytes, { statuses = [400, 403], ctx = CTX, empty = false, orClean = false } = {}) {
  const res = await probe(port, bytes);
  assertClean(ctx);
  const forwarded = be.requests().length > 0;
  if (orClean && forwarded && res.rs[0]?.status === 200) return res;
  assertRefusal(res.rs[0], statuses, res.data);
  if (empty) assert.equal(backendHttp().length, 0, `the backend received: ${show(backendHttp())}`);
  return res;
}

// A frame answer that is syncgate's refusal: [seq, 400|401|403|409, {errorCode, reasons}], or
// a participant batch answered 200 with every action refused.
function assertFrameRefusal(a, seq, statuses = [400, 403, 409]) {
  assert.ok(a, `no answer to call ${seq}`);
  assert.equal(a[0], seq);
  if (a[1] === 200 && Array.isArray(a[2]?.responses)) {
    assert.ok(a[2].responses.length > 0 && a[2].responses.every((x) => x.status !== 200 && typeof x.errorCode === 'string'), JSON.stringify(a));
    return;
  }
  assert.ok(statuses.includes(a[1]), `answered ${JSON.stringify(a)}`);
  assert.equal(typeof a[2]?.errorCode, 'string', JSON.stringify(a));
  assert.ok(Array.isArray(a[2].reasons) && a[2].reasons.length > 0, JSON.stringify(a));
}

// Opens a WebSocket on PATH; if syncgate refuses the upgrade, the refusal must be one of
// STATUSES and no socket may reach the backend. If it is accepted, each of FRAMES must be
// answered by syncgate with a refusal and nothing forbidden may arrive.
async function expectUpgradeRefusedOrInspected(port, path, { frames = [], statuses = [400, 403, 404, 414], ctx = CTX, frameStatuses } = {}) {
  await be.reset();
  const ws = await RawWs.open(port, path, { expect101: false });
  try {
    if (!ws.head || !/^HTTP\/1.1 101/.test(ws.head)) {
      await sleep(40);
      const data = Buffer.concat([Buffer.from(ws.head || '', 'latin1'), ws.rest || ws.buf]);
      const [r] = parseResponses(data);
      assertRefusal(r, statuses, data);
      assert.ok(!be.records().some((x) => x.wsTarget), 'no socket reached the backend');
      assertClean(ctx);
      return 'refused';
    }
    for (const [seq, text] of frames) {
      ws.sendText(text);
      assertFrameRefusal(await ws.json(seq, 2000), seq, frameStatuses);
    }
    await sleep(40);
    assertClean(ctx);
    return 'inspected';
  } finally {
    ws.destroy();
  }
}

const FORBIDDEN_FRAMES = [
  [1, '[1,"PUT","/users/u2",{"name":"x"},{}]'],
  [2, '[2,"PUT","/conversations/c1",{"subject":"x"},{}]'],
  [3, '[3,"DELETE","/conversations/c1/participants/bob",{},{}]'],
];

// ============================================================================================
describe('control set: allowed calls pass byte for byte', () => {
  function expectedForward(bytes) {
    const s = bytes.toString('latin1');
    const end = s.indexOf('\r\n\r\n');
    const lines = s.slice(0, end).split('\r\n').filter((l) => !/^(connection|keep-alive|te|upgrade|proxy-connection):/i.test(l));
    return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n' + FWD + '\r\n', 'latin1'), bytes.subarray(end + 4)]);
  }
  const controls = [
    ['GET /v1/tApp/users/x with a user token', req('GET', '/v1/tApp/users/x')],
    ['PUT /v1/tApp/users/x with the secret key', req('PUT', '/v1/tApp/users/x', { auth: SK, body: '{"name":"Alice"}' })],
    ['POST /v1/tApp/conversations/c1/messages with a user token', req('POST', '/v1/tApp/conversations/c1/messages', { body: '{"content":"hi"}', headers: ['Content-Type: application/json'] })],
    ['GET /api/v0/tApp', req('GET', '/api/v0/tApp', { auth: null, headers: ['x-talkjs-client-build: 1'] })],
    ['PUT /v1/otherApp/users/x (an app without a section: switches on)', req('PUT', '/v1/otherApp/users/x', { auth: OT, body: '{"name":"x"}' })],
    ['PUT /public_api/v1/tApp/conversations/c1 with the secret key', req('PUT', '/public_api/v1/tApp/conversations/c1', { auth: SK, body: '{"subject":"s"}' })],
    ['DELETE /v1/tApp/conversations/c1/participants/bob with the secret key', req('DELETE', '/v1/tApp/conversations/c1/participants/bob', { auth: SK })],
    ['POST /v1/tApp/files (upload) with a user token', req('POST', '/v1/tApp/files', { body: 'data', headers: ['Content-Type: application/octet-stream'] })],
    ['GET /v1/tApp/me/messages/search with a user token', req('GET', '/v1/tApp/me/messages/search?q=hi&limit=5')],
    ['OPTIONS /v1/tApp/users/x (CORS preflight)', req('OPTIONS', '/v1/tApp/users/x', { auth: null, headers: ['Origin: https://app.test', 'Access-Control-Request-Method: PUT'] })],
    ['HEAD /v1/tApp/users/x with a user token', req('HEAD', '/v1/tApp/users/x')],
    ['a chunked POST of a message (lower-case chunked)', req('POST', '/v1/tApp/conversations/c1/messages', { headers: ['Transfer-Encoding: chunked'], body: chunked('{"content":"hi"}') })],
    ['GET /v1/tApp/users/x with ordinary extra headers', req('GET', '/v1/tApp/users/x', { headers: ['X-Custom-Thing: 1', 'Accept: */*', 'Cookie: a=b'] })],
  ];
  for (const [name, bytes] of controls) {
    test(`control: ${name}`, T, async () => {
      const res = await probe(sg.port, bytes);
      assert.equal(res.rs.length, 1, show(res.data));
      assert.equal(res.rs[0].status, 200, show(res.data));
      assert.deepEqual(backendHttp().toString('latin1'), expectedForward(bytes).toString('latin1'));
      assertClean();
    });
  }

  test('control: two pipelined allowed requests on one connection', T, async () => {
    const a = req('GET', '/v1/tApp/users/x'), b = req('POST', '/v1/tApp/conversations/c1/messages', { body: '{"content":"x"}' });
    const res = await probe(sg.port, Buffer.concat([a, b]), { want: 2 });
    assert.deepEqual(res.rs.map((r) => r.status), [200, 200]);
    assert.deepEqual(be.requests().map((r) => `${r.method} ${r.target}`), ['GET /v1/tApp/users/x', 'POST /v1/tApp/conversations/c1/messages']);
  });

  test('control (refusal): PUT /v1/tApp/users/x with a user token is 403 USER_SYNC_DISABLED, nothing forwarded', T, async () => {
    const res = await expectRefused(sg.port, req('PUT', '/v1/tApp/users/x', { body: '{}' }), { statuses: [403], empty: true });
    assert.equal(JSON.parse(res.rs[0].body).errorCode, 'USER_SYNC_DISABLED');
  });

  const RT_ALLOWED = [
    '[0,"GET","/ping",{},{}]',
    '[1,"POST","/session/renew",{"token":"' + UT + '"},{}]',
    '[2,"POST","/conversations/c1/messages",{"content":"hi"},{}]',
    '[3,"GET","/me/conversations/c1",{},{}]',
    '[4,"SUBSCRIBE","/users",{"ids":["bob"]},{}]',
    '[5,"POST","/me/conversations/c1/read",{},{}]',
    '[6,"GET","/users",{"ids":["alice","bob"],"includePrivateFields":false},{}]',
  ];
  for (const base of ['/v1', '/public_api/v1']) {
    test(`control: a realtime socket on ${base}/tApp/realtime/alice relays allowed calls unchanged`, T, async () => {
      await be.reset();
      const ws = await RawWs.open(sg.port, `${base}/tApp/realtime/alice?talkjs-core=1.12.0`);
      for (const f of RT_ALLOWED) {
        ws.sendText(f);
        const seq = JSON.parse(f)[0];
        assert.deepEqual(await ws.json(seq), [seq, 200, {}]);
      }
      assert.deepEqual(be.messages().map((m) => m.text), RT_ALLOWED);
      ws.destroy();
      assertClean();
    });
  }

  test('control: on /v1/otherApp/realtime/bob a PUT /users/bob arrives', T, async () => {
    await be.reset();
    const ws = await RawWs.open(sg.port, '/v1/otherApp/realtime/bob');
    const f = '[1,"PUT","/users/bob",{"name":"Bob"},{}]';
    ws.sendText(f);
    assert.deepEqual(await ws.json(1), [1, 200, {}]);
    assert.deepEqual(be.messages().map((m) => m.text), [f]);
    ws.destroy();
  });

  test('control (refusal): on /v1/tApp/realtime/alice a PUT /users/u2 is answered 403 by syncgate', T, async () => {
    await be.reset();
    const ws = await RawWs.open(sg.port, '/v1/tApp/realtime/alice');
    ws.sendText(FORBIDDEN_FRAMES[0][1]);
    const a = await ws.json(1);
    assertFrameRefusal(a, 1, [403]);
    assert.equal(a[2].errorCode, 'USER_SYNC_DISABLED');
    ws.sendText('[2,"GET","/ping",{},{}]');
    assert.deepEqual(await ws.json(2), [2, 200, {}], 'the socket still relays');
    assert.deepEqual(be.messages().map((m) => m.text), ['[2,"GET","/ping",{},{}]']);
    ws.destroy();
  });
});

// ============================================================================================
describe('a. Connection naming framing or routing headers', () => {
  const SMUGGLED = `PUT /v1/tApp/users/x HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${UT}\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"name":"evil"}`;
  const tokens = [
    ...['Content-Length', 'content-length', 'CONTENT-LENGTH', 'cOnTeNt-LeNgTh', 'Content_Length', 'content_length'].map((t) => [t, 'cl']),
    ...['Transfer-Encoding', 'transfer-encoding', 'TRANSFER-ENCODING', 'Transfer_Encoding'].map((t) => [t, 'te']),
    ...['Host', 'HOST', 'Authorization', 'authorization'].map((t) => [t, 'cl']),
  ];
  const placements = [
    ['alone', (t) => [`Connection: ${t}`]],
    ['among other tokens', (t) => [`Connection: keep-alive, ${t},X-Foo`]],
    ['in a second Connection header', (t) => ['Connection: keep-alive', `Connection: ${t}`]],
  ];
  const carriers = [
    ['GET /v1/tApp/users/x', 'GET', '/v1/tApp/users/x'],
    ['POST /v1/tApp/conversations/c1/messages', 'POST', '/v1/tApp/conversations/c1/messages'],
  ];
  for (const [carrierName, method, target] of carriers) {
    for (const [tok, framing] of tokens) {
      for (const [where, conn] of placements) {
        if (carrierName.startsWith('POST') && where !== 'alone') continue;
        test(`${carrierName} with Connection naming ${tok} (${where}) and a smuggled PUT as its body -> 400, nothing forwarded`, T, async () => {
          const headers = [...conn(tok), framing === 'te' ? 'Transfer-Encoding: chunked' : `Content-Length: ${Buffer.byteLength(SMUGGLED)}`];
          const bytes = req(method, target, { headers, body: framing === 'te' ? chunked(SMUGGLED) : SMUGGLED });
          await expectRefused(sg.port, bytes, { statuses: [400], empty: true });
        });
      }
    }
  }
  test('HTTP/1.0 keep-alive GET with Connection: keep-alive, Content-Length and a smuggled PUT -> 400', T, async () => {
    const bytes = req('GET', '/v1/tApp/users/x', { version: '1.0', headers: ['Connection: keep-alive, Content-Length', `Content-Length: ${Buffer.byteLength(SMUGGLED)}`], body: SMUGGLED });
    await expectRefused(sg.port, bytes, { statuses: [400], empty: true });
  });
  test('an allowed WebSocket upgrade whose Connection also names Content-Length -> 400', T, async () => {
    const bytes = req('GET', '/v1/tApp/realtime/alice', { auth: null, headers: ['Upgrade: websocket', 'Connection: Upgrade, Content-Length', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', `Content-Length: ${Buffer.byteLength(SMUGGLED)}`], body: SMUGGLED });
    await expectRefused(sg.port, bytes, { statuses: [400], empty: true });
  });
});

// ============================================================================================
describe('b. realtime upgrades whose ids do not fit a fixed buffer, and odd ids', () => {
  const pct = (s) => encodeURIComponent(s);
  const cases = [
    ['a 256-byte ASCII user id', `/v1/tApp/realtime/${'u'.repeat(256)}`],
    ['a 300-byte ASCII user id', `/v1/tApp/realtime/${'u'.repeat(300)}`],
    ['a 1000-byte ASCII user id', `/v1/tApp/realtime/${'u'.repeat(1000)}`],
    ['a 4000-byte ASCII user id', `/v1/tApp/realtime/${'u'.repeat(4000)}`],
    ['a 300-byte user id on /public_api/v1', `/public_api/v1/tApp/realtime/${'u'.repeat(300)}`],
    ['a 300-byte user id with a query string', `/v1/tApp/realtime/${'u'.repeat(300)}?talkjs-core=1.12.0&talkjs-client-id=x`],
    ['100 two-byte characters, percent-encoded', `/v1/tApp/realtime/${pct('é'.repeat(100))}`],
    ['100 three-byte characters, percent-encoded', `/v1/tApp/realtime/${pct('€'.repeat(100))}`],
    ['100 four-byte characters, percent-encoded', `/v1/tApp/realtime/${pct('😀'.repeat(100))}`],
    ['a 255-byte user id (the old buffer\'s last fit)', `/v1/tApp/realtime/${'u'.repeat(255)}`],
    ['a user id with spaces and semicolons', `/v1/tApp/realtime/${pct('al ice;x=1')}`],
    ['a user id with an escaped slash', '/v1/tApp/realtime/a%2Fb'],
    ['a user id that is not UTF-8', '/v1/tApp/realtime/%C3%28'],
    ['an app id with %3B (decodes to tApp;)', '/v1/tApp%3B/realtime/alice'],
    ['an app id with ;params', '/v1/tApp;v=1/realtime/alice'],
    ['an app id with a space', '/v1/t%20App/realtime/alice'],
    ['an app id with a trailing escaped NUL', '/v1/tApp%00/realtime/alice'],
    ['an app id spelled with an escape (%74App)', '/v1/%74App/realtime/alice'],
  ];
  for (const [name, path] of cases) {
    test(`realtime upgrade with ${name}: refused, or every forbidden frame answered by syncgate`, T, async () => {
      await expectUpgradeRefusedOrInspected(sg.port, path, { frames: FORBIDDEN_FRAMES });
    });
  }

  describe('with identity = require', () => {
    let sgr;
    before(async () => { sgr = await startSyncgate(be.port, APPS_REQUIRE); });
    after(async () => { await sgr?.stop(); });
    for (const [name, path] of [['a 300-byte user id', `/v1/tApp/realtime/${'u'.repeat(300)}`], ['100 three-byte characters', `/v1/tApp/realtime/${pct('€'.repeat(100))}`]]) {
      test(`identity = require, ${name}: refused, or calls before a valid renew answered 401 and not forwarded`, T, async () => {
        await be.reset();
        const ws = await RawWs.open(sgr.port, path, { expect101: false });
        try {
          if (!/^HTTP\/1.1 101/.test(ws.head || '')) {
            const [r] = parseResponses(Buffer.concat([Buffer.from(ws.head || '', 'latin1'), ws.rest || ws.buf]));
            assertRefusal(r, [400, 414], Buffer.from(ws.head || ''));
            assert.ok(!be.records().some((x) => x.wsTarget));
            return;
          }
          ws.sendText('[1,"GET","/users",{"ids":["u2"]},{}]');
          assertFrameRefusal(await ws.json(1, 2000), 1, [401]);
          ws.sendText(FORBIDDEN_FRAMES[0][1].replace('[1,', '[2,'));
          assertFrameRefusal(await ws.json(2, 2000), 2, [401, 403]);
          await sleep(40);
          assert.deepEqual(be.messages().map((m) => m.text), [], 'nothing reached the backend before a valid renew');
        } finally {
          ws.destroy();
        }
      });
    }
  });
});

// ============================================================================================
describe('c. shapes syncgate does not recognise', () => {
  const body = '{"name":"evil"}';
  const http = [
    // case variants of the path words
    ['PUT', '/v1/tApp/Users/x'], ['PUT', '/v1/tApp/USERS/x'], ['POST', '/v1/tApp/Users/x'],
    ['PUT', '/v1/tApp/Conversations/c1'], ['POST', '/v1/tApp/CONVERSATIONS/c1'],
    ['PUT', '/v1/tApp/conversations/c1/Participants/bob'], ['DELETE', '/v1/tApp/conversations/c1/PARTICIPANTS/bob'],
    ['POST', '/v1/tApp/conversations/c1/Participants'], ['PATCH', '/v1/tApp/Conversations/c1/participants/bob'],
    ['PUT', '/V1/tApp/users/x'], ['PUT', '/PUBLIC_API/v1/tApp/users/x'], ['PUT', '/public_api/V1/tApp/users/x'],
    ['PUT', '/Public_Api/V1/tApp/conversations/c1'], ['DELETE', '/V1/tApp/conversations/c1/participants/bob'],
    // percent-encoded path words
    ['PUT', '/v1/tApp/%75sers/x'], ['PUT', '/v1/tApp/%55sers/x'], ['PUT', '/%561/tApp/users/x'],
    ['PUT', '/v1/tApp/conversation%53/c1'], ['PUT', '/public%5Fapi/v1/tApp/users/x'], ['PUT', '/PUBLIC%5FAPI/v1/tApp/users/x'],
    // ;params in segments
    ['PUT', '/v1/tApp;v=1/users/x'], ['PUT', '/v1;x/tApp/users/x'], ['PUT', '/v1/tApp/users;x/y'],
    ['PUT', '/v1/tApp/users/x;y'], ['PUT', '/public_api;a/v1/tApp/users/x'], ['PUT', '/public_api/v1;a/tApp/users/x'],
    ['PUT', '/v1/tApp/conversations;a=b/c1'], ['DELETE', '/v1/tApp/conversations/c1/participants;x/bob'],
    ['PUT', '/v1/tApp/Users;x/y'], ['POST', '/v1/tApp/conversations/c1/participants;p'],
    // other methods
    ['PROPPATCH', '/v1/tApp/users/x'], ['MERGE', '/v1/tApp/users/x'], ['MERGE', '/v1/tApp/conversations/c1'],
    ['put', '/v1/tApp/users/x'], ['Put', '/v1/tApp/users/x'], ['MOVE', '/v1/tApp/users/x'],
    ['patch', '/v1/tApp/conversations/c1/participants/bob'],
    // mutations under /api/v0/{app}
    ['POST', '/api/v0/tApp'], ['PUT', '/api/v0/tApp'], ['DELETE', '/api/v0/tApp'],
    ['POST', '/api/v0/tApp/users/x'], ['PUT', '/api/v0/tApp/users/x'], ['DELETE', '/api/v0/tApp/users/x'],
    ['PATCH', '/api/v0/tApp/conversations/c1'], ['PUT', '/API/v0/tApp/users/x'], ['POST', '/api/V0/tApp/x'],
    ['PUT', '/Api/v0/tApp/users/x'], ['POST', '/api/v0;x/tApp/users/x'], ['POST', '/api/v0/tApp;x/users/x'],
    // app ids outside [A-Za-z0-9_.-]
    ['PUT', '/v1/t%20App/users/x'], ['PUT', '/v1/tApp%3B/users/x'], ['PUT', '/v1/tApp%3Bv=1/users/x'],
    ['PUT', '/v1/tApp%2C/users/x'], ['PUT', '/v1/tApp%40/users/x'], ['PUT', '/public_api/v1/tApp%20/users/x'],
    ['PUT', '/v1/tApp%C3%A9/users/x'], ['PUT', '/v1/%74App/users/x'],
    // empty, dot and backslash segments, escaped separators
    ['PUT', '/v1/tApp/users/x/'], ['PUT', '//v1/tApp/users/x'], ['PUT', '/v1//tApp/users/x'], ['PUT', '/v1/tApp/./users/x'],
    ['PUT', '/v1/tApp/x/../users/x'], ['PUT', '/v1/tApp/users/%2e%2e/users/x'], ['PUT', '/v1/tApp%2Fusers/x'],
    ['PUT', '/v1/tApp\\users\\x'], ['PUT', '/v1/tApp/users%5Cx'],
  ];
  for (const [method, target] of http) {
    test(`${method} ${target} with a user token -> refused, nothing forbidden forwarded`, T, async () => {
      // a create of something that exists is answered 409 (the SDK's success), after a lookup
      await expectRefused(sg.port, req(method, target, { body }), { statuses: method === 'POST' ? [400, 403, 409] : [400, 403] });
    });
  }

  test('pipelined: an allowed GET, then PUT /v1/tApp/Users/x on the same connection -> the second is refused', T, async () => {
    const bytes = Buffer.concat([req('GET', '/v1/tApp/users/x'), req('PUT', '/v1/tApp/Users/x', { body })]);
    const res = await probe(sg.port, bytes, { want: 2 });
    assertClean();
    assert.equal(res.rs[0]?.status, 200, show(res.data));
    assertRefusal(res.rs[1], [400, 403], res.data);
  });
  test('keep-alive: a refused body-less PUT, then PUT /V1/tApp/users/x on the same connection -> both refused', T, async () => {
    const bytes = Buffer.concat([req('PUT', '/v1/tApp/users/x'), req('PUT', '/V1/tApp/users/x', { body })]);
    const res = await probe(sg.port, bytes, { want: 2 });
    assertClean();
    assertRefusal(res.rs[0], [403], res.data);
    assertRefusal(res.rs[1], [400, 403], res.data);
  });

  // Method overrides on a read: refused, or forwarded only without a reading that mutates.
  const overrides = [
    ['GET', '/v1/tApp/users/x', ['X-HTTP-Method-Override: PUT']],
    ['GET', '/v1/tApp/users/x', ['X-HTTP-Method: PUT']],
    ['GET', '/v1/tApp/conversations/c1/participants/bob', ['X-Method-Override: DELETE']],
    ['GET', '/v1/tApp/users/x', ['x-http-method-override: put']],
    ['GET', '/v1/tApp/users/x', ['X_HTTP_Method_Override: PUT']],
    ['HEAD', '/v1/tApp/users/x', ['X-HTTP-Method-Override: DELETE']],
    ['GET', '/api/v0/tApp/users/x', ['X-HTTP-Method-Override: POST']],
    ['GET', '/v1/tApp/users/x?_method=PUT', []],
    ['GET', '/v1/tApp/conversations/c1?_method=post', []],
    ['GET', '/v1/tApp/users/x?%5Fmethod=PUT', []],
    ['GET', '/v1/tApp/users/x?a=1;_method=DELETE', []],
    ['GET', '/api/v0/tApp?_method=DELETE', []],
  ];
  for (const [method, target, headers] of overrides) {
    test(`${method} ${target} ${headers.join(' ')} -> refused, or forwarded with no reading that mutates`, T, async () => {
      await expectRefused(sg.port, req(method, target, { headers, body: method === 'POST' ? '{}' : '' }), { orClean: true });
    });
  }

  // WebSocket upgrades on shapes that are realtime-like but not exactly the realtime shape.
  const upgrades = [
    '/v1/tApp/Realtime/alice', '/v1/tApp/REALTIME/alice', '/v1/tApp/%52ealtime/alice', '/v1/tApp/%72ealtime/alice',
    '/V1/tApp/realtime/alice', '/PUBLIC_API/v1/tApp/realtime/alice', '/public_api/V1/tApp/realtime/alice',
    '/v1/tApp;x/realtime/alice', '/v1;x/tApp/realtime/alice', '/v1/tApp/realtime;x/alice', '/v1/tApp/realtime/alice/extra',
    '/v1/tApp/realtime', '/v1/tApp/users/alice', '/api/v0/tApp/realtime/alice', '/v1/tApp//realtime/alice',
  ];
  for (const path of upgrades) {
    test(`WebSocket upgrade on ${path}: refused, or its frames inspected`, T, async () => {
      await expectUpgradeRefusedOrInspected(sg.port, path, { frames: FORBIDDEN_FRAMES });
    });
  }

  // Inside realtime frames on a normal socket.
  const frames = [
    '[1,"PUT","/Users/u2",{"name":"x"},{}]',
    '[1,"PUT","/USERS/u2",{"name":"x"},{}]',
    '[1,"POST","/Users/u2",{"name":"x"},{}]',
    '[1,"PUT","/\\u0055sers/u2",{"name":"x"},{}]',
    '[1,"PUT","/u\\u0073ers/u2",{"name":"x"},{}]',
    '[1,"PUT","/%55sers/u2",{"name":"x"},{}]',
    '[1,"PUT","/%75sers/u2",{"name":"x"},{}]',
    '[1,"PUT","/CONVERSATIONS/c1",{"subject":"x"},{}]',
    '[1,"POST","/Conversations/c1",{"subject":"x"},{}]',
    '[1,"POST","/conversations/c1/Participants",{"actions":[{"id":"bob","method":"PUT","params":{"access":"ReadWrite"}}]},{}]',
    '[1,"DELETE","/conversations/c1/PARTICIPANTS/bob",{},{}]',
    '[1,"PATCH","/Conversations/c1/participants/bob",{"access":"ReadWrite"},{}]',
    '[1,"PUT","/users;x/u2",{"name":"x"},{}]',
    '[1,"PUT","/users/u2;x",{"name":"x"},{}]',
    '[1,"PUT","/conversations;v=1/c1",{"subject":"x"},{}]',
    '[1,"put","/users/u2",{"name":"x"},{}]',
    '[1,"Put","/users/u2",{"name":"x"},{}]',
    '[1,"PUT","//users/u2",{"name":"x"},{}]',
    '[1,"PUT","/users/u2/",{"name":"x"},{}]',
    '[1,"PUT","/users/../users/u2",{"name":"x"},{}]',
    '[1,"POST","/session/renew/x",{},{}]',
    '[1,"PUT","users/u2",{"name":"x"},{}]',
    '[1,"PUT","/users/u2?x=1",{"name":"x"},{}]',
    '[1,"PUT","/users/u2#f",{"name":"x"},{}]',
    '[1,"PUT","\\\\users\\\\u2",{"name":"x"},{}]',
    '[1,"PUT","/users%2Fu2",{"name":"x"},{}]',
    '[1,"PUT ","/users/u2",{"name":"x"},{}]',
    '[1,"PUT","/users/u2",{"name":"x"},{},"extra"]',
    '[1,"POST","/conversations/c1/participants/",{"actions":[{"id":"bob","method":"PUT","params":{}}]},{}]',
    '[1,"POST","/Conversations/c1/participants",{"actions":[{"id":"bob","method":"PUT","params":{}}]},{}]',
  ];
  for (const f of frames) {
    test(`frame ${f.slice(0, 70)} on /v1/tApp/realtime/alice -> refused by syncgate, not forwarded`, T, async () => {
      await be.reset();
      const ws = await RawWs.open(sg.port, '/v1/tApp/realtime/alice');
      try {
        ws.sendText(f);
        assertFrameRefusal(await ws.json(1, 2000), 1, [400, 403, 409]);
        await sleep(40);
        assertClean();
        assert.ok(!be.messages().some((m) => m.text === f), 'the frame itself did not reach the backend');
      } finally {
        ws.destroy();
      }
    });
  }
});

// ============================================================================================
describe('d. the boken exchange with identity = require', () => {
  let sgr;
  before(async () => { sgr = await startSyncgate(be.port, APPS_REQUIRE); });
  after(async () => { await sgr?.stop(); });
  const good = signatureOf(SK, 'alice'), bad = signatureOf(SK, 'mallory');
  const u = (target, method = 'GET', headers = []) => req(method, target, { auth: null, headers, body: ['POST', 'PUT', 'PATCH'].includes(method) ? '{}' : '' });

  for (const [name, bytes] of [
    ['GET with a valid lower-case signature', u(`/api/v0/tApp/bokens/alice?signature=${good}`)],
    ['GET with a valid upper-case signature', u(`/api/v0/tApp/bokens/alice?signature=${good.toUpperCase()}`)],
    ['GET /api/v0/tApp (the app check)', u('/api/v0/tApp')],
  ]) {
    test(`control: ${name} passes`, T, async () => {
      const res = await probe(sgr.port, bytes);
      assert.equal(res.rs[0]?.status, 200, show(res.data));
      assert.equal(be.requests().length, 1);
      assertClean(CTX_REQUIRE);
    });
  }

  const probes = [
    ['GET, no signature', u('/api/v0/tApp/bokens/alice')],
    ['GET, a wrong signature', u(`/api/v0/tApp/bokens/alice?signature=${bad}`)],
    ['GET, an empty signature', u('/api/v0/tApp/bokens/alice?signature=')],
    ['GET, another user\'s signature', u(`/api/v0/tApp/bokens/mallory?signature=${good}`)],
    ['HEAD, no signature', u('/api/v0/tApp/bokens/alice', 'HEAD')],
    ['HEAD, a wrong signature', u(`/api/v0/tApp/bokens/alice?signature=${bad}`, 'HEAD')],
    ['GET /API/v0/tApp/Bokens/alice, no signature', u('/API/v0/tApp/Bokens/alice')],
    ['GET /api/V0/tApp/bokens/alice, no signature', u('/api/V0/tApp/bokens/alice')],
    ['GET /api/v0/tApp/BOKENS/alice, a wrong signature', u(`/api/v0/tApp/BOKENS/alice?signature=${bad}`)],
    ['GET /api/v0/tApp/%62okens/alice, no signature', u('/api/v0/tApp/%62okens/alice')],
    ['GET /api/v0/tApp;x/bokens/alice, no signature', u('/api/v0/tApp;x/bokens/alice')],
    ['GET /api/v0/tApp/bokens;x/alice, no signature', u('/api/v0/tApp/bokens;x/alice')],
    ['GET /api/v0/tApp%3B/bokens/alice, no signature', u('/api/v0/tApp%3B/bokens/alice')],
    ['POST, no signature', u('/api/v0/tApp/bokens/alice', 'POST')],
    ['PUT, no signature', u('/api/v0/tApp/bokens/alice', 'PUT')],
    ['DELETE, a wrong signature', u(`/api/v0/tApp/bokens/alice?signature=${bad}`, 'DELETE')],
    ['POST, a valid signature', u(`/api/v0/tApp/bokens/alice?signature=${good}`, 'POST')],
    ['two signatures, valid then invalid', u(`/api/v0/tApp/bokens/alice?signature=${good}&signature=${bad}`)],
    ['two signatures, invalid then valid', u(`/api/v0/tApp/bokens/alice?signature=${bad}&signature=${good}`)],
    ['Signature= (upper-case name), wrong', u(`/api/v0/tApp/bokens/alice?Signature=${bad}`)],
    ['signature= valid and Signature= wrong', u(`/api/v0/tApp/bokens/alice?signature=${good}&Signature=${bad}`)],
    ['Signature= wrong and signature= valid', u(`/api/v0/tApp/bokens/alice?Signature=${bad}&signature=${good}`)],
    ['%73ignature= wrong', u(`/api/v0/tApp/bokens/alice?%73ignature=${bad}`)],
    ['signature= valid and %73ignature= wrong', u(`/api/v0/tApp/bokens/alice?signature=${good}&%73ignature=${bad}`)],
    ['%73ignature= wrong and signature= valid', u(`/api/v0/tApp/bokens/alice?%73ignature=${bad}&signature=${good}`)],
    ['signature= valid;signature= wrong (";" separator)', u(`/api/v0/tApp/bokens/alice?signature=${good};signature=${bad}`)],
    ['a valid signature and _method=POST', u(`/api/v0/tApp/bokens/alice?signature=${good}&_method=POST`)],
  ];
  for (const [name, bytes] of probes) {
    test(`boken exchange, ${name} -> 401 or 400, nothing forwarded without one valid signature`, T, async () => {
      await expectRefused(sgr.port, bytes, { statuses: [400, 401, 403], ctx: CTX_REQUIRE });
    });
  }
  test('boken exchange, GET with a valid signature and X-HTTP-Method-Override: POST -> refused, or forwarded without it', T, async () => {
    await expectRefused(sgr.port, u(`/api/v0/tApp/bokens/alice?signature=${good}`, 'GET', ['X-HTTP-Method-Override: POST']), { statuses: [400, 401, 403], ctx: CTX_REQUIRE, orClean: true });
  });
});

// ============================================================================================
describe('e. two Authorization headers', () => {
  const cases = [
    ['user token, then secret key', 'PUT', '/v1/tApp/users/x', [`Authorization: Bearer ${UT}`, `Authorization: Bearer ${SK}`]],
    ['secret key, then user token', 'PUT', '/v1/tApp/users/x', [`Authorization: Bearer ${SK}`, `Authorization: Bearer ${UT}`]],
    ['secret key twice', 'PUT', '/v1/tApp/users/x', [`Authorization: Bearer ${SK}`, `Authorization: Bearer ${SK}`]],
    ['user token twice', 'PUT', '/v1/tApp/users/x', [`Authorization: Bearer ${UT}`, `Authorization: Bearer ${UT}`]],
    ['secret key, then user token, names in other cases', 'PUT', '/v1/tApp/users/x', [`authorization: Bearer ${SK}`, `AUTHORIZATION: Bearer ${UT}`]],
    ['secret key, then an empty one', 'PUT', '/v1/tApp/users/x', [`Authorization: Bearer ${SK}`, 'Authorization: ']],
    ['secret key, then user token, on a conversation', 'PUT', '/v1/tApp/conversations/c1', [`Authorization: Bearer ${SK}`, `Authorization: Bearer ${UT}`]],
    ['secret key, then user token, on a participant delete', 'DELETE', '/v1/tApp/conversations/c1/participants/bob', [`Authorization: Bearer ${SK}`, `Authorization: Bearer ${UT}`]],
    ['secret key, then user token, on /public_api/v1', 'PUT', '/public_api/v1/tApp/users/x', [`Authorization: Bearer ${SK}`, `Authorization: Bearer ${UT}`]],
    ['user token, then secret key, on a read', 'GET', '/v1/tApp/users/x', [`Authorization: Bearer ${UT}`, `Authorization: Bearer ${SK}`]],
  ];
  for (const [name, method, target, headers] of cases) {
    test(`${method} ${target} with two Authorization headers (${name}) -> 400, nothing forwarded`, T, async () => {
      const bytes = req(method, target, { auth: null, headers, body: method === 'PUT' ? '{"name":"x"}' : '' });
      await expectRefused(sg.port, bytes, { statuses: [400], empty: true });
    });
  }
});

// ============================================================================================
describe('f. framing toward the backend', () => {
  const MSG = '{"content":"hi"}';
  for (const spelling of ['Chunked', 'CHUNKED', 'cHuNkEd']) {
    test(`Transfer-Encoding: ${spelling} on an allowed POST reaches the backend as exactly "chunked"`, T, async () => {
      const bytes = req('POST', '/v1/tApp/conversations/c1/messages', { headers: [`Transfer-Encoding: ${spelling}`], body: chunked(MSG) });
      const res = await probe(sg.port, bytes);
      assert.equal(res.rs[0]?.status, 200, show(res.data));
      const [r] = be.requests();
      assert.ok(r, 'forwarded');
      const te = r.headers.filter(([k]) => k.toLowerCase().replace(/_/g, '-') === 'transfer-encoding').map(([k, v]) => `${k}: ${v}`);
      assert.deepEqual(te.map((x) => x.replace(/^[^:]*/, (k) => k.toLowerCase())), ['transfer-encoding: chunked']);
      assert.equal(r.body.toString(), MSG);
      assert.equal(r.get('content-length').length, 0);
      assertClean();
    });
  }

  // Header names that map onto a framing header with `_` read as `-`.
  const mapped = [
    ['Content_Length', '5'], ['content_length', '5'], ['CONTENT_LENGTH', '5'],
    ['Transfer_Encoding', 'chunked'], ['transfer_encoding', 'chunked'], ['TRANSFER_ENCODING', 'chunked'],
  ];
  const configs = [['default', ''], ['reject', 'underscore_headers = reject\n'], ['drop', 'underscore_headers = drop\n'], ['allow', 'underscore_headers = allow\n']];
  for (const [cfgName, cfgLine] of configs) {
    describe(`underscore_headers: ${cfgName}`, () => {
      let s;
      before(async () => {
        s = cfgName === 'default' ? sg : await startSyncgate(be.port, cfgLine + APPS);
      });
      after(async () => { if (cfgName !== 'default') await s?.stop(); });

      for (const [name, value] of mapped) {
        test(`[${cfgName}] GET /v1/tApp/users/x with "${name}: ${value}" -> 400, nothing forwarded`, T, async () => {
          await expectRefused(s.port, req('GET', '/v1/tApp/users/x', { headers: [`${name}: ${value}`] }), { statuses: [400], empty: true });
        });
      }
      test(`[${cfgName}] Transfer_Encoding: chunked with Content-Length on an allowed POST -> 400, nothing forwarded`, T, async () => {
        await expectRefused(s.port, req('POST', '/v1/tApp/conversations/c1/messages', { headers: ['Transfer_Encoding: chunked', `Content-Length: ${MSG.length}`], body: MSG }), { statuses: [400], empty: true });
      });
      test(`[${cfgName}] Content-Length with Content_Length on an allowed POST -> 400, nothing forwarded`, T, async () => {
        await expectRefused(s.port, req('POST', '/v1/tApp/conversations/c1/messages', { headers: [`Content-Length: ${MSG.length}`, 'Content_Length: 0'], body: MSG }), { statuses: [400], empty: true });
      });

      // X_Forwarded_For reads as a header syncgate sets itself: refusing it is also accepted.
      test(`[${cfgName}] GET /v1/tApp/users/x with "X_Forwarded_For: 6.6.6.6" -> ${cfgName === 'allow' ? 'refused 400, or forwarded' : 'refused 400, or removed'}`, T, async () => {
        const res = await probe(s.port, req('GET', '/v1/tApp/users/x', { headers: ['X_Forwarded_For: 6.6.6.6'] }));
        assertClean();
        if (res.rs[0]?.status === 400 || cfgName === 'reject') {
          assertRefusal(res.rs[0], [400], res.data);
          assert.equal(backendHttp().length, 0);
          return;
        }
        assert.equal(res.rs[0]?.status, 200, show(res.data));
        const [r] = be.requests();
        if (cfgName !== 'allow') assert.ok(!r.headers.some(([k]) => k.includes('_')), `no underscore header at the backend: ${show(backendHttp())}`);
        assert.deepEqual(r.get('x-forwarded-for'), ['127.0.0.1'], 'the one X-Forwarded-For is syncgate\'s');
      });
      for (const [hname, hvalue] of [['X_Custom', '1'], ['x_custom_header', 'v']]) {
        const expect = cfgName === 'reject' ? 'refused 400' : cfgName === 'allow' ? 'forwarded' : 'removed';
        test(`[${cfgName}] GET /v1/tApp/users/x with "${hname}: ${hvalue}" -> ${expect}`, T, async () => {
          const bytes = req('GET', '/v1/tApp/users/x', { headers: [`${hname}: ${hvalue}`] });
          if (cfgName === 'reject') {
            await expectRefused(s.port, bytes, { statuses: [400], empty: true });
            return;
          }
          const res = await probe(s.port, bytes);
          assert.equal(res.rs[0]?.status, 200, show(res.data));
          const [r] = be.requests();
          assert.ok(r, 'forwarded');
          const has = r.headers.some(([k, v]) => k === hname && v === hvalue);
          if (cfgName === 'allow') assert.ok(has, `${hname} forwarded: ${show(backendHttp())}`);
          else assert.ok(!r.headers.some(([k]) => k.includes('_')), `no underscore header at the backend: ${show(backendHttp())}`);
          assertClean();
        });
      }
    });
  }

  test('a pipelined pair: GET with Content_Length eating the head of an allowed POST whose body is a forbidden PUT -> nothing forbidden', T, async () => {
    const inner = `PUT /v1/tApp/users/x HTTP/1.1\r\nHost: sg.test\r\nAuthorization: Bearer ${UT}\r\nContent-Length: 2\r\n\r\n{}`;
    const second = req('POST', '/v1/tApp/conversations/c1/messages', { body: inner });
    const first = req('GET', '/v1/tApp/users/x', { headers: [`Content_Length: ${second.indexOf('\r\n\r\n') + 4}`] });
    const res = await probe(sg.port, Buffer.concat([first, second]), { want: 2 });
    assertClean();
    assertRefusal(res.rs[0], [400], res.data);
  });
});

// Reading the whole record once more with every framing is what the oracle does; this checks
// the oracle itself on a known smuggle, so that a broken oracle cannot make the suite pass.
test('the oracle flags a body smuggled past a dropped Content-Length, and only that', () => {
  const smuggled = `PUT /v1/tApp/users/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${UT}\r\nContent-Length: 2\r\n\r\n{}`;
  const stream = Buffer.from(`GET /v1/tApp/users/x HTTP/1.1\r\nHost: a\r\n\r\n${smuggled}`);
  assert.equal(parseStream(stream, { underscore: false, prefer: 'te' }).length, 2);
  const recs = [{ id: 1, http: stream, messages: [] }];
  assert.equal(violations(recs, CTX).length, 1);
  const fine = [{ id: 1, http: Buffer.from(`PUT /v1/tApp/users/x HTTP/1.1\r\nAuthorization: Bearer ${SK}\r\nContent-Length: 2\r\n\r\n{}GET /v1/tApp/Users/x HTTP/1.1\r\n\r\n`), messages: [] }];
  assert.deepEqual(violations(fine, CTX), []);
  const frames = [{ id: 2, http: Buffer.alloc(0), wsTarget: '/v1/tApp/Realtime/x', messages: [{ opcode: 1, text: '[1,"put","/%55sers/u2",{},{}]' }, { opcode: 1, text: '[2,"POST","/conversations/c1/messages",{},{}]' }] }];
  assert.equal(violations(frames, CTX).length, 1);
  const other = [{ id: 3, http: Buffer.from(`PUT /v1/tApp;v=1/users/x HTTP/1.1\r\nX-HTTP-Method-Override: PUT\r\n\r\nGET /v1/tApp/users/x?_method=DELETE HTTP/1.1\r\n\r\n`), messages: [] }];
  assert.equal(violations(other, CTX).length, 2);
});
