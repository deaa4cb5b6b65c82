// The training run of the profile-guided release build (scripts/build.sh): a few seconds of
// the traffic syncgate exists for, through an instrumented syncgate (SYNCGATE_BIN), so that
// GCC lays the code out and inlines it for that traffic (-fprofile-use). A mix weighted as a
// deployment sees it, not the benchmark alone: realtime sessions of the real SDK with both
// switches off (allowed reads and messages, refused user and conversation sync, existence
// lookups, identity), REST with the server's key over keep-alive and a connection per request,
// both again over TLS (Node clients, and wrk for volume) and over TLS on both sides, hostile
// input (malformed heads, smuggling, bad frames), and small realtime call frames and a
// WebSocket tunnel from several sockets (ws_bench). Six syncgate processes (plain, TLS, and TLS
// to a TLS backend in front of the reference backend; plain and TLS in front of an nginx
// answering JSON; one in front of ws_bench's server); each adds its counts to the profile when
// it exits. Exits non-zero if a syncgate failed or the traffic went wrong. The SDK and hostile
// rounds are the soak's (tests/lib/traffic.mjs).
// Usage: SYNCGATE_BIN=... WS_BENCH=... node scripts/pgo_train.mjs [seconds=6]
import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startBackend, startSyncgate, rawExchange, freePort, sleep } from '../tests/lib/harness.mjs';
import { RawWs, frame, userToken } from '../tests/lib/rawws.mjs';
import { makePki, tlsSection } from '../tests/lib/tlsca.mjs';
import { sdkRound, hostileRound } from '../tests/lib/traffic.mjs';

const seconds = Number(process.argv[2] || 6);
const WS_BENCH = process.env.WS_BENCH;
const KEY = 'sk_test_train';
const APP = `[app:train]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n`;
const errors = [];
const counts = { sdk: 0, rest: 0, close: 0, ws: 0, hostile: 0, wrk: 0 };
const fail = (what) => { if (errors.length < 20) errors.push(what); };

const pki = makePki();
const be = await startBackend({ apps: { train: KEY } });
const plain = await startSyncgate(be.port, APP);
const tls = await startSyncgate(be.port, `${APP}${tlsSection(pki.server)}`, { tls: true });
// TLS on both sides: a backend that serves https/wss, verified against the test CA
const beTls = await startBackend({ apps: { train: KEY }, tls: pki.server });
const bothTls = await startSyncgate(beTls.port, `upstream_ca_file = ${pki.ca}\n${APP}${tlsSection(pki.server)}`,
  { tls: true, upstream: 'https://localhost' });
const benchPort = await freePort();
const benchServer = spawn(WS_BENCH, ['server', String(benchPort)], { stdio: 'ignore' });
await sleep(200);
const relay = await startSyncgate(benchPort, '[app:bench]\nuser_sync = off\nconversation_sync = off\n');
// REST volume: the reference backend answers a keep-alive connection's requests ~40 ms apart
// (Nagle and delayed ACKs between its socket tap and Node's HTTP server), so wrk drives the
// HTTP and TLS relay paths against an nginx answering a small JSON user, as tests/bench/http.sh.
const ngDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-pgo-nginx-'));
const ngPort = await freePort();
fs.writeFileSync(path.join(ngDir, 'nginx.conf'), `worker_processes 1; daemon off; pid ${ngDir}/nginx.pid; error_log ${ngDir}/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${ngPort};
    location / { default_type application/json; return 200 '{"id":"alice","name":"Alice","custom":{"team":"red"},"role":"default"}'; } } }`);
const ngBackend = spawn('nginx', ['-c', path.join(ngDir, 'nginx.conf'), '-p', ngDir], { stdio: 'ignore' });
const rest = await startSyncgate(ngPort, APP);
const restTls = await startSyncgate(ngPort, `${APP}${tlsSection(pki.server)}`, { tls: true });
const end = Date.now() + seconds * 1000;

async function sdkLoop(n) {
  while (Date.now() < end) {
    const e = await sdkRound({ be, port: plain.port, appId: 'train', key: KEY, tag: `t${n}` });
    if (e) fail(e);
    counts.sdk++;
  }
}

// REST with the server's key on one keep-alive connection (MOD: http or https).
async function restLoop(mod, port, ca) {
  const agent = new mod.Agent({ keepAlive: true, maxSockets: 1, ca });
  const call = (method, path, body) => new Promise((resolve) => {
    const req = mod.request({ host: '127.0.0.1', servername: 'localhost', port, method, path, agent,
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', (e) => resolve(e.message));
    req.end(body);
  });
  for (let i = 0; Date.now() < end; i++) {
    const put = await call('PUT', `/v1/train/users/r${i % 50}`, JSON.stringify({ name: `r${i}`, custom: { n: String(i) } }));
    const get = await call('GET', `/v1/train/users/r${i % 50}`);
    if (put !== 200 || get !== 200) fail(`rest: ${put} ${get}`);
    counts.rest += 2;
  }
  agent.destroy();
}

// Two requests and a close on a new connection each time (the client side of a browser's REST).
async function closeLoop(port, tlsOpts) {
  while (Date.now() < end) {
    const r = await rawExchange(port, `GET /v1/train/users/r1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${KEY}\r\n\r\nGET /v1/train/users/r2 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${KEY}\r\nConnection: close\r\n\r\n`,
      { idle: 2000, tls: tlsOpts });
    if (!r.closed) fail('close loop: connection not closed');
    counts.close++;
  }
}

// Raw realtime sockets (TLS or not): renew, reads, a refused sync call, a fragmented call.
async function rawWsLoop(port, tlsOpts) {
  for (let n = 0; Date.now() < end; n++) {
    const ws = await RawWs.open(port, `/v1/train/realtime/w${n}`, { tls: tlsOpts });
    ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('train', `w${n}`, KEY) }, {}]));
    await ws.json(0);
    for (let i = 1; i < 20; i++) {
      ws.sendText(JSON.stringify([i, 'GET', '/ping', {}, {}]));
      await ws.json(i);
    }
    ws.sendText(`[20,"PUT","/users/w${n}",{"name":"x"},{}]`);
    const refused = await ws.json(20);
    if (!refused || refused[1] !== 403) fail(`raw ws: ${JSON.stringify(refused)}`);
    ws.send(frame(1, '[21,"GET",', { fin: false }));
    ws.send(frame(0, '"/ping",{},{}]'));
    await ws.json(21);
    ws.destroy();
    counts.ws += 22;
  }
}

async function hostileLoop() {
  while (Date.now() < end) {
    const e = await hostileRound({ port: plain.port, appId: 'train', key: KEY, n: counts.hostile, idle: 500 });
    if (e) fail(e);
    counts.hostile++;
  }
}

// Small realtime call frames, then a tunnel, from several sockets at once (the Node loops keep
// one call in flight each). Short: ws_bench's C client outruns every other loop here, and a
// profile it dominated would leave the HTTP and TLS paths looking cold.
function wsBench(path, conns, secs) {
  return new Promise((resolve) => {
    const p = spawn(WS_BENCH, ['rtt', String(relay.port), String(conns), String(secs), path], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => { if (code !== 0 || !(Number(out) > 0)) fail(`ws_bench ${path}: ${code} ${out}`); resolve(); });
  });
}

// wrk for SECS against URL (ARGS: more wrk options); counts its requests.
function wrk(url, secs, ...args) {
  return new Promise((resolve) => {
    const p = spawn('wrk', ['-t1', '-c10', `-d${secs}s`, '-H', `Authorization: Bearer ${KEY}`, ...args, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => {
      const m = /(\d+) requests in/.exec(out);
      if (code !== 0 || !m) fail(`wrk ${url}: ${code} ${out.slice(0, 200)}`);
      else counts.wrk += Number(m[1]);
      resolve();
    });
  });
}

const ca = fs.readFileSync(pki.ca);
await Promise.all([sdkLoop(1), sdkLoop(2), restLoop(http, plain.port), restLoop(https, tls.port, ca),
  restLoop(http, plain.port), restLoop(https, tls.port, ca), closeLoop(plain.port),
  closeLoop(tls.port, { ca, servername: 'localhost' }), rawWsLoop(plain.port), rawWsLoop(plain.port),
  rawWsLoop(tls.port, { ca }), rawWsLoop(tls.port, { ca }), restLoop(https, bothTls.port, ca), rawWsLoop(bothTls.port, { ca }),
  hostileLoop(),
  (async () => { await wsBench('/v1/bench/realtime/alice', 10, 1); await wsBench('/bench/tunnel/alice', 4, 1); })(),
  (async () => {
    const user = `/v1/train/users/alice`;
    await wrk(`http://127.0.0.1:${rest.port}${user}`, 1);
    await wrk(`https://localhost:${restTls.port}${user}`, 1);
    await wrk(`http://127.0.0.1:${rest.port}${user}`, 1, '-H', 'Connection: close');
  })()]);

// The SDK has no way to end a session: its sockets reconnect after syncgate stops, and the ws
// package reports those refused connects as uncaught errors. They are the teardown's.
process.on('uncaughtException', (e) => { if (!['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(e.code)) throw e; });
for (const sg of [plain, tls, bothTls, relay, rest, restTls]) {
  try { await sg.stop(); } catch (e) { fail(String(e.message).slice(0, 500)); }
}
benchServer.kill();
ngBackend.kill();
await be.stop();
await beTls.stop();
fs.rmSync(pki.dir, { recursive: true, force: true });
fs.rmSync(ngDir, { recursive: true, force: true });
if (errors.length) {
  console.error(`pgo training: ${errors.length} errors, first: ${errors.slice(0, 3).join(' | ')}`);
  process.exit(1);
}
console.error(`pgo training: ${seconds} s through syncgate: ${counts.sdk} SDK rounds, ${counts.rest} REST calls, ` +
  `${counts.close} connections closed after two, ${counts.ws} raw realtime calls, ${counts.hostile} hostile rounds, ` +
  `${counts.wrk} wrk requests (keep-alive, TLS, a connection each), ws_bench`);
process.exit(0);
