// Named upstreams as an operator runs them (#17): one client connection whose requests go to
// different upstreams by route (each with the Host it names, the default one with the
// client's), /readyz with a line per upstream (and 503 naming the one that is down), the
// per-upstream metrics, and reloads: a changed route applies to the next request, a changed
// [upstream:NAME] address is refused with the previous policy kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, rawExchange, parseResponses, freePort, waitFor } from '../lib/harness.mjs';

let a, b, sg, admin;
const conf = (bPort, route = '/b/{*}', beeHost = 'bee.internal') =>
  `[upstream:bee]\nurl = http://127.0.0.1:${bPort}\nhost = ${beeHost}\n` +
  `[route:to-bee]\nmatch = * ${route}\nupstream = bee\nrewrite = /echo/{*}\nsync = none\n` +
  `[admin]\nlisten = 127.0.0.1:${admin}\n`;

before(async () => {
  a = await startBackend();
  b = await startBackend();
  admin = await freePort();
  sg = await startSyncgate(a.port, conf(b.port));
});
after(async () => { await sg?.stop(); await a?.stop(); await b?.stop(); });

const GET = (p, host = 'client.example') => `GET ${p} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
const adminGet = async (p) => { const r = parseResponses((await rawExchange(admin, GET(p, 'localhost'), { idle: 3000 })).data)[0]; return { ...r, body: r.body.toString() }; };
const hostOf = (e) => { for (let i = 0; i < e.rawHeaders.length; i += 2) if (e.rawHeaders[i].toLowerCase() === 'host') return e.rawHeaders[i + 1]; return undefined; };

test('one keep-alive connection, requests to two upstreams in turn: each reaches its own, with its Host, answers in order', async () => {
  const seenA = (await a.log()).length, seenB = (await b.log()).length;
  const res = await rawExchange(sg.port, GET('/a/1') + GET('/b/2?q=1') + GET('/a/3') + GET('/b/4'), { idle: 2000 });
  const rs = parseResponses(res.data);
  assert.equal(rs.length, 4, res.data.toString());
  assert.ok(!res.closed, 'the connection stays open');
  const la = (await a.log()).slice(seenA).filter((e) => e.kind === 'http');
  const lb = (await b.log()).slice(seenB).filter((e) => e.kind === 'http');
  assert.deepEqual(la.map((e) => e.url), ['/a/1', '/a/3']);
  assert.deepEqual(la.map(hostOf), ['client.example', 'client.example'], 'the default upstream gets the client\'s Host');
  assert.deepEqual(lb.map((e) => e.url), ['/echo/2?q=1', '/echo/4'], 'rewritten, query kept');
  assert.deepEqual(lb.map(hostOf), ['bee.internal', 'bee.internal'], 'a named upstream gets its own Host, once');
  assert.ok(lb.every((e) => e.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host').length === 1));
  // the access lines name the route and the upstream of each
  await waitFor(() => sg.logs().filter((l) => l.event === 'access' && /^GET \/[ab]\/[1-4]$/.test(l.request)).length === 4);
  const lines = sg.logs().filter((l) => l.event === 'access' && /^GET \/[ab]\/[1-4]$/.test(l.request));
  assert.deepEqual(lines.map((l) => `${l.request} ${l.route} ${l.upstream}`),
    ['GET /a/1 talkjs-other default', 'GET /b/2 to-bee bee', 'GET /a/3 talkjs-other default', 'GET /b/4 to-bee bee']);
});

test('/readyz has a line per upstream; metrics count requests per upstream', async () => {
  const r = await adminGet('/readyz');
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(JSON.parse(r.body), { ready: true, upstreams: { default: 'ok', bee: 'ok' } });
  const m = (await adminGet('/metrics')).body;
  const count = (u) => Number(new RegExp(`syncgate_upstream_requests_total\\{upstream="${u}"\\} (\\d+)`).exec(m)?.[1]);
  assert.ok(count('default') >= 2 && count('bee') >= 2, m.split('\n').filter((l) => l.includes('upstream_')).join('\n'));
  assert.match(m, /syncgate_upstream_failures_total\{upstream="bee"\} 0/);
});

test('a reload that changes a route and a Host applies to the next request; one that moves a named upstream is refused, the running routes kept', async () => {
  sg.writeConf(conf(b.port, '/bee/{*}', 'bee2.internal'));
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().some((l) => l.event === 'reload'));
  const seenB = (await b.log()).length;
  let rs = parseResponses((await rawExchange(sg.port, GET('/bee/5'))).data);
  assert.equal(rs[0].status, 200); // the backend's /echo
  const after = (await b.log()).slice(seenB).filter((e) => e.kind === 'http');
  assert.deepEqual(after.map((e) => e.url), ['/echo/5']);
  assert.deepEqual(after.map(hostOf), ['bee2.internal'], 'the new host = applies');

  sg.writeConf(conf(a.port, '/moved/{*}', 'bee2.internal'));
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().some((l) => l.event === 'reload_failed'));
  const failed = sg.logs().find((l) => l.event === 'reload_failed');
  assert.match(failed.why, /\[upstream:bee\] changed name or address: that needs a restart/);
  const seenB2 = (await b.log()).length;
  rs = parseResponses((await rawExchange(sg.port, GET('/bee/6'))).data);
  assert.deepEqual((await b.log()).slice(seenB2).filter((e) => e.kind === 'http').map((e) => e.url), ['/echo/6'],
    'the previous policy still routes');
});

test('/readyz with one upstream down: 503 naming it, the others ok', async () => {
  await b.stop();
  const r = await adminGet('/readyz');
  assert.equal(r.status, 503, r.body);
  const j = JSON.parse(r.body);
  assert.equal(j.ready, false);
  assert.equal(j.upstreams.default, 'ok');
  assert.equal(j.upstreams.bee, 'backend unreachable');
  assert.match(j.why, /backend unreachable \(upstream bee\)/);
  // a request routed there: 502 from syncgate, counted as that upstream's failure
  const rs = parseResponses((await rawExchange(sg.port, GET('/bee/7'))).data);
  assert.equal(rs[0].status, 502);
  const m = (await adminGet('/metrics')).body;
  assert.match(m, /syncgate_upstream_failures_total\{upstream="bee"\} [1-9]/);
  assert.match(m, /syncgate_upstream_failures_total\{upstream="default"\} 0/);
  b = null;
});
