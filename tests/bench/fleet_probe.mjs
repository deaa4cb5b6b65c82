// The fleet benchmark's measurements (tests/bench/fleet.sh; not a test):
//
//   node tests/bench/fleet_probe.mjs flips N ADMIN_A ADMIN_B ADMIN_C APP
//     N flips of APP's user_sync through A's admin API (PUT /apps/APP, no token: loopback).
//     For each: the time from sending the PUT until both B and C show the new value (GET
//     /apps/APP polled on each every ~1 ms, over kept-alive connections), and the PUT's own
//     reply time (it waits for Redis). Prints p50 / p99 / max in ms, and how many replies
//     were not "fleet": "shared" or never reached both. The switch ends as it began.
//
//   node tests/bench/fleet_probe.mjs calls PORT N
//     N sequential realtime calls of each kind on two sockets: an allowed user change (app
//     bench: forwarded; the user's fact is dropped and the drop published to the fleet) and a
//     refused one (app benchoff: answered by syncgate, counted for the fleet's budget). Prints
//     "allowed P50 P99 refused P50 P99" in microseconds (after 100 warm-up calls of each).
import http from 'node:http';
import { RawWs, userToken } from '../lib/rawws.mjs';

const KEY = process.env.BENCH_KEY || 'sk_test_bench'; // the apps' key, for a backend that checks tokens

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const request = (port, method, path, body) => new Promise((resolve, reject) => {
  const data = body ? JSON.stringify(body) : null;
  const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { text += d; });
    res.on('end', () => resolve({ status: res.statusCode, text }));
  });
  req.on('error', reject);
  req.end(data);
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] : NaN; };

async function flips(n, a, b, c, app) {
  const show = async (port) => JSON.parse((await request(port, 'GET', `/apps/${app}`)).text).user_sync;
  const initial = await show(a);
  let value = initial;
  const reach = [], reply = [];
  let unshared = 0, lost = 0;
  for (let i = 0; i < n; i++) {
    value = value === 'on' ? 'off' : 'on';
    const t0 = performance.now();
    const put = request(a, 'PUT', `/apps/${app}`, { user_sync: value }).then((r) => {
      reply.push(performance.now() - t0);
      if (r.status !== 200 || JSON.parse(r.text).fleet !== 'shared') unshared++;
    });
    const until = async (port) => {
      for (;;) {
        if ((await show(port)) === value) return performance.now() - t0;
        if (performance.now() - t0 > 5000) return null;
        await sleep(1);
      }
    };
    const [tb, tc] = await Promise.all([until(b), until(c)]);
    await put;
    if (tb === null || tc === null) lost++;
    else reach.push(Math.max(tb, tc));
    await sleep(10);
  }
  if (value !== initial) { // (an odd N) as it was, for what comes next
    await request(a, 'PUT', `/apps/${app}`, { user_sync: initial });
    for (const port of [b, c]) while ((await show(port)) !== initial) await sleep(5);
  }
  const f = (x) => x.toFixed(1);
  console.log(`flips ${n}: reached B and C  p50 ${f(pct(reach, 0.5))} ms  p99 ${f(pct(reach, 0.99))} ms  max ${f(Math.max(...reach))} ms` +
    `  (PUT reply p50 ${f(pct(reply, 0.5))} ms  p99 ${f(pct(reply, 0.99))} ms)  not shared ${unshared}  not reached in 5 s ${lost}`);
}

async function calls(port, n) {
  const ok = await RawWs.open(port, '/v1/bench/realtime/alice');
  const off = await RawWs.open(port, '/v1/benchoff/realtime/bob');
  // (ws_bench's backend answers anything; a real one wants the session renewed first)
  ok.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('bench', 'alice', KEY) }, {}]));
  off.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('benchoff', 'bob', KEY) }, {}]));
  await ok.json(0, 5000);
  await off.json(0, 5000);
  let seq = 0;
  const one = async (ws, path, want) => {
    const s = ++seq;
    const t0 = performance.now();
    ws.sendText(`[${s},"PUT","${path}",{"name":"n${s}"},{}]`);
    const a = await ws.json(s, 10000);
    const us = (performance.now() - t0) * 1000;
    if (!a || a[1] !== want) throw new Error(`call ${s} on ${path}: ${JSON.stringify(a)} (wanted ${want})`);
    return us;
  };
  for (let i = 0; i < 100; i++) { await one(ok, '/users/alice', 200); await one(off, '/users/bob', 403); }
  const allowed = [], refused = [];
  for (let i = 0; i < n; i++) {
    allowed.push(await one(ok, '/users/alice', 200));
    refused.push(await one(off, '/users/bob', 403));
  }
  ok.destroy();
  off.destroy();
  const f = (x) => x.toFixed(0);
  console.log(`allowed ${f(pct(allowed, 0.5))} ${f(pct(allowed, 0.99))} refused ${f(pct(refused, 0.5))} ${f(pct(refused, 0.99))}`);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'flips') await flips(Number(args[0]), Number(args[1]), Number(args[2]), Number(args[3]), args[4]);
else if (mode === 'calls') await calls(Number(args[0]), Number(args[1]));
else { console.error('usage: fleet_probe.mjs flips N ADMIN_A ADMIN_B ADMIN_C APP | calls PORT N'); process.exit(2); }
agent.destroy();
