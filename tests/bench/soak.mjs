// Soak (not a CI test): mixed SDK, REST and hostile traffic through syncgate for a while,
// against the ASan build by default. Passes with 0 errors, no sanitizer report, and resident
// memory flat after warm-up. Usage: node tests/bench/soak.mjs [minutes=10]
import fs from 'node:fs';
import net from 'node:net';
import { startBackend, startSyncgate, rawExchange, parseResponses, sleep } from '../lib/harness.mjs';
import { RawWs, frame, userToken } from '../lib/rawws.mjs';
import { session, uniqueUser, settle } from '../interop/sdk.mjs';

const minutes = Number(process.argv[2] || 10);
const KEY = 'sk_test_soak';
const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const be = await startBackend({ apps: { soak: KEY } });
const sg = await startSyncgate(be.port, `workers = 2\n[app:soak]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n`,
  { env: { ASAN_OPTIONS: 'detect_leaks=1:quarantine_size_mb=16' } });
const host = `127.0.0.1:${sg.port}`;
const errors = [];
const counts = { sdk: 0, rest: 0, hostile: 0 };
const end = Date.now() + minutes * 60000;

async function sdkLoop(n) {
  while (Date.now() < end) {
    const me = uniqueUser(`soak${n}`), cid = uniqueUser('c');
    await be.seed({ appId: 'soak', users: { [me]: {} }, conversations: { [cid]: { participants: { [me]: {} } } } });
    const s = session({ host, appId: 'soak', userId: me, key: KEY });
    const c = s.conversation(cid);
    const ok = [await settle(() => c.send('soak message')), await settle(() => c.markAsRead()), await settle(() => s.user(me).get()),
      await settle(() => c.set({ notify: false })), await settle(() => s.user(me).createIfNotExists({ name: 'x' }))];
    const refused = [await settle(() => s.currentUser.set({ name: 'nope' })), await settle(() => c.set({ subject: 'nope' }))];
    if (!ok.every((r) => r.ok) || refused.some((r) => r.ok)) errors.push(`sdk: ${JSON.stringify([...ok, ...refused])}`);
    counts.sdk++;
  }
}
async function restLoop() {
  while (Date.now() < end) {
    const res = await rawExchange(sg.port, `PUT /v1/soak/users/r${counts.rest % 100} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 13\r\n\r\n{"name":"r1"}GET /v1/soak/users/r1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${KEY}\r\nConnection: close\r\n\r\n`, { idle: 2000 });
    const rs = parseResponses(res.data);
    if (rs.length !== 2 || rs[0].status !== 200) errors.push(`rest: ${res.data.toString().slice(0, 100)}`);
    counts.rest++;
  }
}
async function hostileLoop() {
  const bad = ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'GET /\x00 HTTP/1.1\r\n\r\n', `GET /${'a'.repeat(10000)} HTTP/1.1\r\n\r\n`];
  while (Date.now() < end) {
    const r = await rawExchange(sg.port, bad[counts.hostile % bad.length], { idle: 1000 });
    if (!r.closed) errors.push('hostile http not closed');
    const ws = await RawWs.open(sg.port, '/v1/soak/realtime/h');
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('soak', 'h', KEY) }, {}]));
    await ws.json(0);
    ws.sendText('[1,"PUT","/users/h",{"a":1,"a":2},{}]');
    const a = await ws.json(1);
    if (!a || a[1] !== 400) errors.push('duplicate keys not refused');
    ws.send(frame(1, '[2,', { fin: false }));
    ws.destroy(); // abandoned mid-fragment
    const s = net.connect(sg.port, '127.0.0.1'); s.on('error', () => {}); s.write('POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nxx'); setTimeout(() => s.destroy(), 50);
    counts.hostile++;
  }
}

const samples = [];
const sampler = setInterval(() => samples.push(rss(sg.proc.pid)), 5000);
await Promise.all([sdkLoop(1), sdkLoop(2), restLoop(), hostileLoop()]);
clearInterval(sampler);
let code = 0;
try { await sg.stop(); } catch (e) { errors.push(String(e.message).slice(0, 2000)); }
await be.stop();
const q = Math.max(1, Math.floor(samples.length / 4));
const warm = samples.slice(q, 2 * q), last = samples.slice(-q);
const avg = (a) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
const growth = (avg(last) - avg(warm)) / Math.max(1, avg(warm));
console.log(`soak: ${minutes} min, ${counts.sdk} SDK rounds, ${counts.rest} REST exchanges, ${counts.hostile} hostile rounds`);
console.log(`soak: RSS KiB samples ${samples.join(' ')}`);
console.log(`soak: RSS after warm-up ${avg(warm).toFixed(0)} KiB -> end ${avg(last).toFixed(0)} KiB (${(growth * 100).toFixed(1)}%)`);
if (errors.length) { console.log(`soak: ${errors.length} errors, first: ${errors.slice(0, 3).join(' | ')}`); code = 1; }
if (growth > 0.1) { console.log('soak: resident memory is not flat'); code = 1; }
console.log(code ? 'soak: FAILED' : 'soak: 0 errors, memory flat');
process.exit(code);
