// Soak (not a CI test): mixed SDK, REST and hostile traffic through syncgate for a while,
// against the ASan build by default. Passes with 0 errors, no sanitizer report, and resident
// memory flat after warm-up. Usage: node tests/bench/soak.mjs [minutes=10]
import fs from 'node:fs';
import { startBackend, startSyncgate, rawExchange, parseResponses } from '../lib/harness.mjs';
import { sdkRound, hostileRound } from '../lib/traffic.mjs';

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
    const e = await sdkRound({ be, port: sg.port, appId: 'soak', key: KEY, tag: `soak${n}` });
    if (e) errors.push(e);
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
  while (Date.now() < end) {
    const e = await hostileRound({ port: sg.port, appId: 'soak', key: KEY, n: counts.hostile });
    if (e) errors.push(e);
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
