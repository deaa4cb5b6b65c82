// Differential test: whenever policy/ accepts a frame, JavaScript's JSON.parse (what the
// backend runs) must read the same method, the same decoded path, the same data keys and the
// same participant actions. Frames: hand-written hazards plus seeded random mutations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const TOOL = process.env.CLASSIFY_TOOL;
const hx = (s) => Buffer.from(s, 'utf8').toString('hex');

// The backend's reading: bytes -> UTF-8 text (ws does this) -> JSON.parse.
function jsRead(bytes) {
  let f;
  try { f = JSON.parse(new TextDecoder('utf-8').decode(bytes)); } catch { return null; }
  if (!Array.isArray(f)) return null;
  if (f.length === 2) return { ack: true };
  const [, method, path, data] = f;
  try {
    const r = { method: hx(method), segs: path.split('/').slice(1).map((s) => hx(decodeURIComponent(s))), keys: Object.keys(data).map(hx) };
    try { r.actions = data.actions.map((a) => ({ id: hx(a.id), method: a.method, params: Object.keys(a.params).map(hx) })); } catch { r.actions = 'unreadable'; }
    return r;
  } catch { return { bad: true }; } // the backend could not read it either
}

const hand = [
  '[1,"PUT","/users/alice",{"name":"a"},{}]',
  '[1,"PUT","/users/alice",{"name":"a","name":"b"},{}]',
  '[1,"PUT","/users/alice",{"na\\u006de":"a","name":"b"},{}]',
  '[1,"PUT","/users/alice",{"custom":{"x":1,"x":2}},{}]',
  '[1,"PUT","/users/al\\u0069ce",{},{}]',
  '[1,"PUT","\\/users\\/alice",{},{}]',
  '[1,"PUT","/users/alice\\u0000",{},{}]',
  '[1,"PUT","/users/alice%00",{},{}]',
  '[1,"PUT","/users/alice",{},{}] [2]',
  '[1,"PUT","/users/alice",{},{}]\n',
  '\ufeff[1,"PUT","/users/alice",{},{}]',
  '[1e400,"GET","/ping",{},{}]',
  '[123456789012345678901234567890,"PUT","/users/a",{},{}]',
  '[-0,"PUT","/users/a",{},{}]',
  '[1,"PUT","/users/\\ud800",{},{}]',
  '[1,"PUT","/users/%ED%A0%80",{},{}]',
  '[1,"PUT","/users/a",{"\\ud800":1},{}]',
  '[1,"PUT","/users/a",{"k":"\\ud800"},{}]',
  '[1,"P\\u0055T","/users/a",{},{}]',
  '[1,"PUT","/users/a",{"__proto__":{"x":1}},{}]',
  '[1,"PUT","/users/a",{"constructor":1,"toString":2},{}]',
  '[1,"POST","/conversations/c/participants",{"actions":[{"id":"a","method":"PUT","params":{"notify":true}}]},{}]',
  '[1,"POST","/conversations/c/participants",{"actions":[{"id":"a","method":"PUT","params":{"notify":true,"notify":false}}]},{}]',
  '[1,"POST","/conversations/c/participants",{"actions":[{"id":"a","id":"b","method":"PUT","params":{}}]},{}]',
  '[1,"POST","/conversations/c/participants",{"actions":[{"id":"\\u0061","method":"PUT","params":{"\\u006eotify":1}}]},{}]',
  '[1,"PUT","/users/a",' + '['.repeat(100) + ']'.repeat(100) + ',{}]',
  '[1,"PUT","/users/a",{"a":' + '{"a":'.repeat(70) + '1' + '}'.repeat(70) + '},{}]',
  '[1,"PUT","/users/caf\u00e9",{},{}]',
  '[1,"PUT","/users/caf%C3%A9",{},{}]',
  '[1,"PUT","/users/%E2%82%AC",{"\u20ac":1},{}]',
  '[7,"ACK"]',
];

// Seeded PRNG (mulberry32) so a failure replays.
function rng(seed) { return () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }; }
const R = rng(20261126);
const pick = (a) => a[Math.floor(R() * a.length)];
const bases = hand.slice(0, 5).concat(['[3,"POST","/conversations/c%201/participants",{"actions":[{"id":"me","method":"PATCH","params":{"notify":"MentionsOnly","access":"Read"}},{"id":"b\\u00e9","method":"POST","params":{}}]},{}]', '[9,"SUBSCRIBE","/me/conversations/c1/messages",{"limit":30,"cursor":null},{}]']);
const inserts = ['\\u0000', '\\ud800', '\\udc00', '\\u0061', '"', '\\', ',', '}', ']', '{', '[', ':', ' ', '\u00e9', '\\"', '"a":1,', '"name":2,', '%', '%2', '%2F', '%00', '/', '..', '1e999', '-', '0', '\x00', '\t'];
// One random edit of the bytes of F (kept as a latin1 string so every byte survives).
function mutate(f) {
  const s = f.toString('latin1');
  const at = Math.floor(R() * (s.length + 1));
  const kind = R();
  let out;
  if (kind < 0.5) out = s.slice(0, at) + Buffer.from(pick(inserts), 'utf8').toString('latin1') + s.slice(at);
  else if (kind < 0.7) out = s.slice(0, at) + s.slice(at + 1);
  else if (kind < 0.85) out = s.slice(0, at) + String.fromCharCode(Math.floor(R() * 256)) + s.slice(at + 1);
  else out = s.replace(/\{"(\w+)":/, (m, k) => `{"${k}":0,"${R() < 0.5 ? k : '\\u' + k.charCodeAt(0).toString(16).padStart(4, '0') + k.slice(1)}":`);
  return Buffer.from(out, 'latin1');
}

test('policy/ and JSON.parse agree on every frame policy/ accepts', () => {
  assert.ok(TOOL, 'CLASSIFY_TOOL is set');
  const frames = hand.map((s) => Buffer.from(s, 'utf8'));
  for (let i = 0; i < 20000; i++) {
    let f = Buffer.from(pick(bases), 'utf8');
    const rounds = 1 + Math.floor(R() * 3);
    for (let r = 0; r < rounds; r++) f = mutate(f);
    frames.push(f);
  }
  const out = spawnSync(TOOL, { input: frames.map((f) => f.toString('base64')).join('\n') + '\n', maxBuffer: 1 << 28 });
  assert.equal(out.status, 0, String(out.stderr));
  const lines = out.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, frames.length);
  let accepted = 0, refusedByPolicyOnly = 0;
  const disagreements = [];
  lines.forEach((c, i) => {
    const js = jsRead(frames[i]);
    if (!c.ok) { if (js && !js.bad) refusedByPolicyOnly++; return; }
    accepted++;
    if (!js || js.bad) { disagreements.push({ frame: frames[i].toString('utf8'), why: 'policy accepted what JSON.parse rejects' }); return; }
    if (c.op === 'ack') { if (!js.ack) disagreements.push({ frame: frames[i].toString() }); return; }
    const mine = { method: c.method, segs: c.segs, keys: c.keys };
    if (c.actions) mine.actions = c.actions.map((a) => ({ id: a.id, method: ['GET', 'PUT', 'POST', 'PATCH'][a.method], params: a.params }));
    const theirs = { method: js.method, segs: js.segs, keys: js.keys };
    if (c.actions) theirs.actions = js.actions;
    try { assert.deepEqual(mine, theirs); } catch { disagreements.push({ frame: frames[i].toString('utf8'), mine, theirs }); }
  });
  assert.deepEqual(disagreements.slice(0, 5), []);
  // the generator must exercise both sides
  assert.ok(accepted > 1000, `accepted ${accepted}`);
  assert.ok(refusedByPolicyOnly > 100, `refused but JSON-valid ${refusedByPolicyOnly}`);
});

test('every hand-written hazard is refused or read identically', () => {
  const out = spawnSync(TOOL, { input: hand.map((s) => Buffer.from(s).toString('base64')).join('\n') + '\n' });
  const lines = out.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
  const verdicts = Object.fromEntries(hand.map((s, i) => [s, lines[i].ok]));
  // the ones that must never pass
  for (const s of [hand[1], hand[2], hand[3], hand[6], hand[7], hand[8], hand[10], hand[14], hand[15], hand[16], hand[18], hand[22], hand[23], hand[26]]) assert.equal(verdicts[s], false, s);
  // and the harmless ones that must
  for (const s of [hand[0], hand[4], hand[5], hand[9], hand[11], hand[12], hand[19], hand[21], hand[24], hand[28], hand[29], hand[30]]) assert.equal(verdicts[s], true, s);
});
