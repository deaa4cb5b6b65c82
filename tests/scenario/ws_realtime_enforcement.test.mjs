// The realtime socket: every client message is decided; a refused call is answered by
// syncgate with the SDK's error shape and never reaches the backend; the socket stays open.
// Hostile framing (fragments, binary, RSV, unmasked, bad UTF-8, oversize) is refused every time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, rawExchange, parseResponses, sleep } from '../lib/harness.mjs';
import { RawWs, frame, userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo', OPEN_KEY = 'sk_test_open';
let be, sg;
before(async () => {
  be = await startBackend({ apps: { demo: KEY, open: OPEN_KEY } });
  sg = await startSyncgate(be.port, `[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n[limits]\nws_message = 64k\nws_fragments = 1024\n`);
});
after(async () => { await sg.stop(); await be.stop(); });

async function session(app = 'demo', user = 'alice', key = KEY) {
  const ws = await RawWs.open(sg.port, `/public_api/v1/${app}/realtime/${user}?talkjs-core=1.12.0`);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken(app, user, key) }, {}]));
  const r = await ws.json(0);
  assert.equal(r[1], 200, JSON.stringify(r));
  return ws;
}
// Text of every WebSocket message the backend received, in order.
const backendFrames = async () => (await be.log()).filter((e) => e.kind === 'ws').map((e) => Buffer.from(e.raw, 'base64').toString('utf8'));
const PUT_USER = '[1,"PUT","/users/alice",{"name":"Mallory"},{}]';

test('allowed calls reach the backend byte for byte, answers come back', async () => {
  await be.clearLog();
  const ws = await session();
  const frames = ['[1,"GET","/users",{"ids":["alice"],"includePrivateFields":false},{}]', '[2, "GET" ,"/ping",{ },{}]', '[3,"POST","/me/conversations/c1/typing",{},{}]'];
  for (const f of frames) ws.sendText(f);
  assert.equal((await ws.json(1))[1], 200);
  assert.equal((await ws.json(2))[1], 200);
  assert.ok(await ws.json(3));
  const got = await backendFrames();
  assert.deepEqual(got.slice(1), frames);
  ws.destroy();
});

test('a refused PUT /users is answered by syncgate and the socket stays open', async () => {
  await be.clearLog();
  const ws = await session();
  ws.sendText(PUT_USER);
  const r = await ws.json(1);
  assert.equal(r[1], 403);
  assert.equal(r[2].errorCode, 'USER_SYNC_DISABLED');
  assert.match(r[2].reasons[0], /demo/);
  assert.match(r[2].reasons[0], /user sync/);
  assert.match(r[2].reasons[0], /REST API/);
  ws.sendText('[2,"GET","/ping",{},{}]');
  assert.equal((await ws.json(2))[1], 200, 'same socket still relays');
  assert.ok(!(await backendFrames()).some((f) => f.includes('"PUT"')));
  assert.ok(sg.logs().some((l) => l.event === 'refuse' && l.transport === 'ws' && l.errorCode === 'USER_SYNC_DISABLED' && l.user === 'alice'));
  ws.destroy();
});

test('conversation sync off: PUT /conversations gets UNAUTHORIZED_TO_EDIT, DELETE participant is refused', async () => {
  await be.clearLog();
  const ws = await session();
  ws.sendText('[1,"PUT","/conversations/c1",{"subject":"x"},{}]');
  const r = await ws.json(1);
  assert.deepEqual([r[1], r[2].errorCode], [403, 'UNAUTHORIZED_TO_EDIT']);
  ws.sendText('[2,"DELETE","/conversations/c1/participants/bob",{},{}]');
  const d = await ws.json(2);
  assert.deepEqual([d[1], d[2].errorCode], [403, 'UNAUTHORIZED_TO_EDIT_PARTICIPANT']);
  assert.equal((await backendFrames()).length, 1, 'only the renew reached the backend');
  ws.destroy();
});

test('a refused participant batch gets one answer with a response per action', async () => {
  await be.clearLog();
  const ws = await session();
  ws.sendText('[1,"POST","/conversations/c1/participants",{"actions":[{"id":"alice","method":"PUT","params":{"access":"Read"}},{"id":"bob","method":"POST","params":{}}]},{}]');
  const r = await ws.json(1);
  assert.equal(r[1], 200);
  assert.equal(r[2].responses.length, 2);
  assert.ok(r[2].responses.every((x) => x.status === 403 && x.errorCode === 'UNAUTHORIZED_TO_EDIT_PARTICIPANT' && x.reasons.length === 1));
  assert.equal((await backendFrames()).length, 1);
  ws.destroy();
});

test('a mixed participant batch: the allowed action goes on alone, the backend answer is merged with the refusal', async () => {
  await be.seed({ appId: 'demo', users: { alice: {}, bob: {} }, conversations: { cmix: { participants: { alice: {}, bob: {} } } } });
  await be.clearLog();
  const ws = await session();
  for (let i = 1; i <= 5; i++) {
    ws.sendText(`[${i},"POST","/conversations/cmix/participants",{"actions":[{"id":"alice","method":"PATCH","params":{"notify":false}},{"id":"bob","method":"PUT","params":{"access":"Read"}}]},{}]`);
    const r = await ws.json(i);
    assert.equal(r[1], 200, JSON.stringify(r));
    assert.deepEqual(r[2].responses.map((x) => x.status), [200, 403]);
    assert.equal(r[2].responses[1].errorCode, 'UNAUTHORIZED_TO_EDIT_PARTICIPANT');
  }
  const sent = (await backendFrames()).filter((f) => f.includes('cmix/participants'));
  assert.equal(sent.length, 5);
  assert.ok(sent.every((f) => f.includes('"alice"') && !f.includes('"bob"')), 'only the allowed action reached the backend');
  ws.destroy();
});

test('switches on: the same calls pass to the backend', async () => {
  await be.clearLog();
  const ws = await session('open', 'alice', OPEN_KEY);
  ws.sendText(PUT_USER);
  assert.equal((await ws.json(1))[1], 200);
  ws.sendText('[2,"PUT","/conversations/c9",{"subject":"x"},{}]');
  assert.equal((await ws.json(2))[1], 200);
  assert.ok((await backendFrames()).includes(PUT_USER));
  ws.destroy();
});

for (const n of [2, 3, 10, 100, 1000]) {
  test(`a forbidden PUT split into ${n} fragments with pings between is refused`, async () => {
    await be.clearLog();
    const ws = await session();
    const text = Buffer.from(PUT_USER), parts = [];
    const step = Math.max(1, Math.ceil(text.length / n));
    const pieces = [];
    for (let i = 0; i < n; i++) pieces.push(text.subarray(Math.min(i * step, text.length), Math.min((i + 1) * step, text.length)));
    pieces.forEach((p, i) => {
      parts.push(frame(i === 0 ? 1 : 0, p, { fin: i === n - 1 }));
      if (i < n - 1) parts.push(frame(9, `p${i}`));
    });
    ws.send(Buffer.concat(parts));
    const r = await ws.json(1);
    assert.equal(r[1], 403);
    assert.ok(await ws.next((f) => f.opcode === 10), 'pongs come back through the backend');
    assert.ok(!(await backendFrames()).some((f) => f.includes('PUT')));
    ws.destroy();
  });
}

const closes = [
  ['a binary message', () => frame(2, PUT_USER), 1003],
  ['RSV1 set', () => frame(1, PUT_USER, { rsv: 4 }), 1002],
  ['an unmasked frame', () => frame(1, PUT_USER, { mask: false }), 1002],
  ['invalid UTF-8', () => frame(1, Buffer.from([0x5b, 0x31, 0x2c, 0xc3, 0x28, 0x5d])), 1007],
  ['invalid UTF-8 split across fragments', () => Buffer.concat([frame(1, Buffer.from('["\xe2'.slice(0, 2)), { fin: false }), frame(0, Buffer.from([0xe2, 0x82]), { fin: false }), frame(0, Buffer.from([0x41, 0x22, 0x5d]))]), 1007],
  ['a message over ws_message', () => frame(1, '[' + '1,'.repeat(40000) + '1]'), 1009],
  ['more fragments than ws_fragments', () => Buffer.concat([frame(1, '[', { fin: false }), ...Array.from({ length: 1100 }, () => frame(0, ' ', { fin: false })), frame(0, ']')]), 1009],
  ['a continuation without a message', () => frame(0, PUT_USER), 1002],
  ['a reserved opcode', () => frame(3, 'x'), 1002],
  ['a fragmented ping', () => frame(9, 'x', { fin: false }), 1002],
  ['a ping over 125 bytes', () => frame(9, 'x'.repeat(126)), 1002],
  ['a non-minimal length', () => { const f = frame(1, PUT_USER); const p = f.subarray(6); return Buffer.concat([Buffer.from([0x81, 0x80 | 126, 0, f[1] & 0x7f]), f.subarray(2, 6), p]); }, 1002],
  ['a close with an invalid code', () => frame(8, Buffer.from([0x03, 0xed])), 1002],
  ['a close with a 1-byte payload', () => frame(8, Buffer.from([0x03])), 1002],
  ['a text frame that is not JSON and has no seq', () => frame(1, 'hello'), 1007],
];
for (const [name, mk, code] of closes) {
  test(`${name} closes the socket with ${code} and never reaches the backend`, async () => {
    await be.clearLog();
    const ws = await session();
    ws.send(mk());
    const c = await ws.closeFrame();
    assert.ok(c, 'a close frame came back');
    assert.equal(c.code, code, c.reason);
    assert.ok(await ws.waitClosed(), 'TCP closed');
    const got = await backendFrames();
    assert.equal(got.length, 1, `backend saw: ${got.slice(1).join(' | ')}`);
  });
}

const badreq = [
  ['duplicate keys in data', '[1,"PUT","/users/alice",{"name":"a","name":"b"},{}]'],
  ['duplicate keys hidden by an escape', '[1,"GET","/users",{"ids":[],"\\u0069ds":["x"]},{}]'],
  ['\\u0000 in the path', '[1,"PUT","/users/alice\\u0000",{},{}]'],
  ['a second JSON value after the array', '[1,"GET","/ping",{},{}][2,"PUT","/users/alice",{},{}]'],
  ['trailing garbage', '[1,"GET","/ping",{},{}] x'],
  ['an encoded slash in an id', '[1,"PUT","/users/a%2Fb",{},{}]'],
  ['a dot segment', '[1,"PUT","/users/..",{},{}]'],
  ['an unknown method', '[1,"MERGE","/users/alice",{},{}]'],
  ['four elements', '[1,"GET","/ping",{}]'],
];
for (const [name, text] of badreq) {
  test(`${name}: 400 INVALID_REQUEST with the client's seq, socket open`, async () => {
    await be.clearLog();
    const ws = await session();
    ws.sendText(text);
    const r = await ws.json(1);
    assert.equal(r[1], 400);
    assert.equal(r[2].errorCode, 'INVALID_REQUEST');
    ws.sendText('[7,"GET","/ping",{},{}]');
    assert.equal((await ws.json(7))[1], 200);
    assert.equal((await backendFrames()).filter((f) => !f.includes('/ping')).length, 1);
    ws.destroy();
  });
}

test('the seq is echoed exactly as the client wrote it', async () => {
  const ws = await session();
  ws.sendText('[123456789012345678901234,"PUT","/users/alice",{},{}]');
  const f = await ws.next((x) => x.opcode === 1 && !x.text.includes('"PUBLISH"'));
  assert.ok(f.text.startsWith('[123456789012345678901234,403,'), f.text);
  ws.destroy();
});

test('permessage-deflate offers are removed; the backend sees no extension header', async () => {
  await be.clearLog();
  const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice', { headers: 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' });
  assert.ok(!/sec-websocket-extensions/i.test(ws.head));
  const up = (await be.log()).find((e) => e.kind === 'http' && e.url.includes('/realtime/'));
  assert.ok(!up.rawHeaders.some((h) => /sec-websocket-extensions/i.test(h)));
  ws.destroy();
});

test('after a non-101 answer no tunnel opens and the held bytes never reach the backend', async () => {
  await be.clearLog();
  const smuggled = frame(1, '[1,"PUT","/users/alice",{},{}]');
  const req = Buffer.concat([Buffer.from('GET /v1/nosuchapp/realtime/alice HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'), smuggled, Buffer.from('GET /bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n')]);
  const res = await rawExchange(sg.port, req, { idle: 1500 });
  const rs = parseResponses(res.data);
  assert.equal(rs.length, 1);
  assert.equal(rs[0].status, 404);
  assert.ok(res.closed);
  const raw = (await be.rawAll()).toString('latin1');
  assert.ok(raw.startsWith('GET /v1/nosuchapp/realtime/alice HTTP/1.1\r\n'));
  assert.ok(!raw.includes('/bytes/1') && !raw.includes('PUT'), 'nothing after the upgrade request was forwarded');
});

test('a bad upgrade request (no key, wrong version) is refused with 400', async () => {
  for (const h of ['Sec-WebSocket-Version: 13\r\n', 'Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n', 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n']) {
    const res = await rawExchange(sg.port, `GET /v1/demo/realtime/alice HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${h}\r\n`, { idle: 1000 });
    assert.equal(parseResponses(res.data)[0].status, 400);
  }
});

test('the close handshake is relayed both ways', async () => {
  const ws = await session();
  ws.send(frame(8, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65])));
  const c = await ws.closeFrame();
  assert.equal(c.code, 1000);
  assert.ok(await ws.waitClosed());
});

test('non-realtime WebSocket paths are relayed as transparent tunnels', async () => {
  const ws = await RawWs.open(sg.port, '/echo-ws');
  ws.send(frame(2, Buffer.from([1, 2, 3])));
  const f = await ws.next((x) => x.opcode === 2);
  assert.deepEqual([...f.payload], [1, 2, 3]);
  ws.destroy();
});

test('an idle realtime socket outlives the HTTP-phase timeouts', async () => {
  const sg2 = await startSyncgate(be.port, `[app:demo]\nsecret_key = ${KEY}\n[limits]\nupstream_response = 300ms\nbody_idle = 300ms\nkeepalive_idle = 300ms\nheader_timeout = 300ms\n`);
  try {
    const ws = await RawWs.open(sg2.port, '/v1/demo/realtime/alice');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'alice', KEY) }, {}]));
    assert.equal((await ws.json(0))[1], 200);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(ws.closed, false, 'still open after four times every HTTP timeout');
    ws.sendText('[1,"GET","/ping",{},{}]');
    assert.equal((await ws.json(1))[1], 200);
    ws.destroy();
  } finally {
    await sg2.stop();
  }
});

// The relay's fast path handles the whole single-frame calls of a read where they lie; these
// check that what reaches the backend is still exactly the allowed frames, as the client
// masked them, in the client's order, whatever the reads look like.
async function wireAfterUpgrade(user) {
  const raw = await be.raw();
  const conn = Object.values(raw).find((b) => b.includes(`/realtime/${user}`));
  assert.ok(conn, 'the backend saw the upgrade');
  return conn.subarray(conn.indexOf('\r\n\r\n') + 4);
}

test('calls sharing a read: allowed frames reach the backend byte for byte and in order around refused and parked ones', async () => {
  await be.clearLog();
  await be.seed({ appId: 'demo', users: { bob: {} }, conversations: { cpark: { participants: { bob: {} } } } });
  const ws = await RawWs.open(sg.port, '/public_api/v1/demo/realtime/bob');
  const renew = frame(1, JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'bob', KEY) }, {}]));
  ws.send(renew);
  assert.equal((await ws.json(0))[1], 200);
  const allowed = [], all = [];
  const add = (f, ok) => { all.push(f); if (ok) allowed.push(f); };
  add(frame(1, '[1,"GET","/ping",{},{}]'), true);
  add(frame(1, '[2,"PUT","/users/bob",{"name":"Mallory"},{}]'), false);
  add(frame(1, '[3,"GET","/users",{"ids":["bob"],"includePrivateFields":false},{}]'), true);
  add(frame(9, 'between'), true); // a ping: control frames go on
  add(frame(1, '[4,"GET","/users",{"ids":["dave"],"includePrivateFields":false},{}]'), true);
  add(frame(1, '[5,"PUT","/conversations/c1",{"subject":"x"},{}]'), false);
  add(frame(1, '[6,', { fin: false }), true); // a fragmented call, allowed
  add(frame(0, '"GET","/ping",{},{}]'), true);
  add(frame(1, '[7,"GET","/ping",{},{}]'), true);
  // my own notify setting in a conversation I am in: allowed after a lookup, so it reaches
  // the backend after the calls that follow it in this read
  const parked = frame(1, '[11,"PATCH","/conversations/cpark/participants/bob",{"notify":false},{}]');
  all.push(parked);
  const one = Buffer.concat(all);
  // a call cut across two writes, then more calls in the second
  const cut = frame(1, '[8,"GET","/users",{"ids":["carol"],"includePrivateFields":false},{}]');
  const tail = [frame(1, '[9,"PUT","/users/bob",{"name":"M"},{}]'), frame(1, '[10,"GET","/ping",{},{}]')];
  ws.send(Buffer.concat([one, cut.subarray(0, 9)]));
  await sleep(150);
  ws.send(Buffer.concat([cut.subarray(9), ...tail]));
  for (const seq of [1, 3, 4, 6, 7, 8, 10]) assert.equal((await ws.json(seq))[1], 200, `call ${seq} answered by the backend`);
  for (const seq of [2, 5, 9]) assert.equal((await ws.json(seq))[1], 403, `call ${seq} refused by syncgate`);
  assert.equal((await ws.json(11))[1], 200, 'the parked call was looked up, allowed and answered by the backend');
  const got = await wireAfterUpgrade('bob'), at = got.indexOf(parked);
  assert.ok(at > 0, 'the parked call reached the backend as sent');
  const expected = Buffer.concat([renew, ...allowed, cut, tail[1]]);
  assert.ok(Buffer.concat([got.subarray(0, at), got.subarray(at + parked.length)]).equals(expected), 'the other allowed frames, as sent, in order');
  ws.destroy();
});

test('a thousand calls in one write, every third refused: the rest reach the backend in order, byte for byte', async () => {
  await be.clearLog();
  const ws = await RawWs.open(sg.port, '/public_api/v1/demo/realtime/carol');
  const renew = frame(1, JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'carol', KEY) }, {}]));
  ws.send(renew);
  assert.equal((await ws.json(0))[1], 200);
  const all = [], allowed = [renew];
  for (let i = 1; i <= 1000; i++) {
    const refused = i % 3 === 0;
    const f = frame(1, refused ? `[${i},"PUT","/users/carol",{"name":"n${i}"},{}]` : `[${i},"GET","/users",{"ids":["u${i}"],"includePrivateFields":false},{}]`);
    all.push(f);
    if (!refused) allowed.push(f);
  }
  ws.send(Buffer.concat(all)); // ~75 KB: several reads, frames cut at their edges
  for (let i = 1; i <= 1000; i++) assert.equal((await ws.json(i, 5000))[1], i % 3 === 0 ? 403 : 200, `call ${i}`);
  const got = await wireAfterUpgrade('carol'), want = Buffer.concat(allowed);
  assert.equal(got.length, want.length, 'as many bytes as the allowed frames hold');
  assert.ok(got.equals(want), `identical bytes (first difference at ${got.findIndex((b, i) => b !== want[i])})`);
  ws.destroy();
});

// Random traffic, random reads. The relay has two paths (whole frames decided straight from
// a read, anything else through the buffered parser) and they hand over wherever a read
// happens to end; a fixed list of seeds makes the mixes and cuts reproducible. Each seed:
// allowed and refused calls, small and 16-bit-length frames, fragmented messages, pings and
// one mixed participant batch (decided at once from a cached fact, so its rewritten frame
// must go out between the frames around it), written in chunks of whole frames or of 1 byte
// to a few KB, with pauses between some, so that reads end between frames and inside
// headers, masks and payloads. The backend must get exactly the allowed frames as the client
// masked them, in order (the batch as the rewrite of its allowed action); the client an
// answer for every call.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
// The next frame of WIRE at OFF, unmasked: {text, end}.
function readFrame(wire, off) {
  let n = wire[off + 1] & 0x7f, at = off + 2;
  if (n === 126) { n = wire.readUInt16BE(at); at += 2; } else if (n === 127) { n = Number(wire.readBigUInt64BE(at)); at += 8; }
  const key = wire.subarray(at, at + 4), body = Buffer.from(wire.subarray(at + 4, at + 4 + n));
  for (let i = 0; i < n; i++) body[i] ^= key[i & 3];
  return { text: body.toString('utf8'), end: at + 4 + n };
}
for (const seed of [1, 7, 42, 1234, 99991, 31337]) {
  test(`random framing and read boundaries (seed ${seed}): allowed frames reach the backend byte for byte, every call is answered`, async () => {
    const rnd = prng(seed), pick = (n) => Math.floor(rnd() * n);
    const user = `r${seed}`, conv = `crand${seed}`;
    await be.seed({ appId: 'demo', users: { [user]: {}, bob: {} }, conversations: { [conv]: { participants: { [user]: {}, bob: {} } } } });
    await be.clearLog();
    const ws = await RawWs.open(sg.port, `/public_api/v1/demo/realtime/${user}`);
    const renew = frame(1, JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', user, KEY) }, {}]));
    ws.send(renew);
    assert.equal((await ws.json(0))[1], 200);
    // a refused call that needs the conversation's participants: looked up and cached, so the
    // batch below is decided as soon as it is read
    ws.sendText(`[1000,"POST","/conversations/${conv}/participants/bob",{},{}]`);
    assert.equal((await ws.json(1000))?.[1], 409);
    const units = [], expect = [{ bytes: renew }], want = new Map(), batchAt = 1 + pick(150);
    let pair;
    const fragments = (text) => {
      const b = Buffer.from(text), n = 2 + pick(4), out = [];
      const cuts = [0, ...Array.from({ length: n - 1 }, () => pick(b.length + 1)).sort((x, y) => x - y), b.length];
      for (let i = 0; i < n; i++) out.push(frame(i ? 0 : 1, b.subarray(cuts[i], cuts[i + 1]), { fin: i === n - 1 }));
      return Buffer.concat(out);
    };
    for (let seq = 1; seq <= 150; seq++) {
      if (rnd() < 0.1) { units.push(frame(9, `p${seq}`)); expect.push({ bytes: units.at(-1) }); } // a ping between messages
      if (seq === batchAt) {
        // right after an allowed frame, in the same write (below): decided while that frame
        // still waits to be sent
        units.push(frame(1, '[500,"GET","/ping",{},{}]'));
        expect.push({ bytes: units.at(-1) });
        want.set(500, 200);
        pair = units.length - 1;
        const mine = { id: user, method: 'PATCH', params: { notify: false } };
        units.push(frame(1, JSON.stringify([seq, 'POST', `/conversations/${conv}/participants`, { actions: [mine, { id: 'bob', method: 'PUT', params: { access: 'Read' } }] }, {}])));
        expect.push({ json: [seq, 'POST', `/conversations/${conv}/participants`, { actions: [mine] }, {}] });
        want.set(seq, 200);
        continue;
      }
      const refused = rnd() < 0.35;
      // sizes from a few bytes to past the 125-byte boundary of the length field
      const ids = Array.from({ length: pick(3) === 0 ? 40 + pick(200) : 1 + pick(3) }, (_, i) => `u${seq}_${i}`);
      const text = refused ? JSON.stringify([seq, 'PUT', `/users/${user}`, { name: 'x'.repeat(pick(300)) }, {}])
        : pick(3) === 0 ? `[${seq},"GET","/ping",{},{}]`
        : JSON.stringify([seq, 'GET', '/users', { ids, includePrivateFields: false }, {}]);
      const f = pick(4) === 0 ? fragments(text) : frame(1, text);
      units.push(f);
      if (!refused) expect.push({ bytes: f });
      want.set(seq, refused ? 403 : 200);
    }
    // Writes end at frame edges most of the time (a read that starts at an edge is decided
    // straight from the block), else anywhere (the rest waits in the buffered parser).
    const stream = Buffer.concat(units), edges = [];
    units.reduce((at, u) => { edges.push(at + u.length); return at + u.length; }, 0);
    const pairAt = edges[pair - 1];
    for (let off = 0; off < stream.length;) {
      const next = edges.findIndex((e) => e > off);
      let end = pick(3) ? edges[Math.min(edges.length - 1, next + pick(5))] : off + 1 + (pick(4) === 0 ? pick(8) : pick(4096));
      if (off < pairAt && end > pairAt) end = pairAt;
      if (off === pairAt) {
        await sleep(20); // the pair starts a read of its own
        end = edges[pair + 1 + pick(3)] ?? stream.length;
      }
      ws.send(stream.subarray(off, end));
      off = Math.min(end, stream.length);
      if (pick(4) === 0) await sleep(pick(3)); // let syncgate read what is there
    }
    for (const [seq, status] of want) {
      const r = await ws.json(seq, 5000);
      assert.equal(r?.[1], status, `seed ${seed}: call ${seq}`);
      if (seq === batchAt) assert.deepEqual(r[2]?.responses?.map((x) => x.status), [200, 403], `seed ${seed}: the batch's answer merges the backend's and syncgate's`);
    }
    const wire = await wireAfterUpgrade(user);
    let off = 0;
    for (const [i, e] of expect.entries()) {
      if (e.bytes) {
        assert.ok(wire.subarray(off, off + e.bytes.length).equals(e.bytes), `seed ${seed}: frame ${i} of the allowed ones, as sent, at byte ${off}`);
        off += e.bytes.length;
      } else {
        const f = readFrame(wire, off);
        assert.deepEqual(JSON.parse(f.text), e.json, `seed ${seed}: the batch, rewritten to its allowed action, in its place`);
        off = f.end;
      }
    }
    assert.equal(off, wire.length, `seed ${seed}: nothing else reached the backend`);
    ws.destroy();
  });
}
