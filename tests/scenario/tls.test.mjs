// TLS on both sides: browsers reach syncgate over https/wss, syncgate reaches an https/wss
// backend. Both relays run unchanged over either side, and every refusal a security engineer
// expects is a refusal: old protocol versions, plain HTTP on the TLS port, an untrusted or
// wrong-host backend (502, logged), a broken certificate on SIGHUP (the old one keeps serving).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { startBackend, startSyncgate, rawExchange, parseResponses, waitFor, SYNCGATE } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { makePki, tlsSection } from '../lib/tlsca.mjs';

const KEY = 'sk_test_demo';
const APP = `[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n`;
let pki;
const cleanup = [];
before(() => { pki = makePki(); });
after(async () => { for (const f of cleanup.reverse()) await f(); fs.rmSync(pki.dir, { recursive: true, force: true }); });

async function backend(tls) {
  const be = await startBackend({ apps: { demo: KEY }, tls });
  cleanup.push(() => be.stop());
  return be;
}
async function syncgate(port, conf, opts) {
  const sg = await startSyncgate(port, conf, opts);
  cleanup.push(() => sg.stop());
  return sg;
}
const ca = () => fs.readFileSync(pki.ca);
const GET = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`;
const header = (r, name) => (r.headers.find(([k]) => k.toLowerCase() === name) || [])[1];
const backendHttp = async (be) => (await be.log()).filter((e) => e.kind === 'http');

async function realtime(port, tlsOpts) {
  const ws = await RawWs.open(port, '/public_api/v1/demo/realtime/alice?talkjs-core=1.12.0', { tls: tlsOpts });
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'alice', KEY) }, {}]));
  assert.equal((await ws.json(0))[1], 200);
  return ws;
}

// One realtime session through syncgate: a read passes, a refused user update is answered by
// syncgate with the SDK's error shape, and the socket stays open for the next call.
async function realtimeRoundTrip(port, tlsOpts, be) {
  await be.clearLog();
  const ws = await realtime(port, tlsOpts);
  ws.sendText('[1,"GET","/users",{"ids":["alice"],"includePrivateFields":false},{}]');
  assert.equal((await ws.json(1))[1], 200);
  ws.sendText('[2,"PUT","/users/alice",{"name":"Mallory"},{}]');
  const refused = await ws.json(2);
  assert.equal(refused[1], 403);
  assert.match(JSON.stringify(refused), /USER_SYNC_DISABLED|user sync/i);
  ws.sendText('[3,"GET","/ping",{},{}]');
  assert.equal((await ws.json(3))[1], 200, 'the socket stays open after a refusal');
  const frames = (await be.log()).filter((e) => e.kind === 'ws').map((e) => Buffer.from(e.raw, 'base64').toString());
  assert.ok(!frames.some((f) => f.includes('Mallory')), 'the refused call never reached the backend');
  ws.destroy();
}

test('TLS client -> syncgate -> plain backend: REST relayed, TLS 1.3 + ALPN http/1.1, X-Forwarded-Proto https', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, APP + tlsSection(pki.server), { tls: true });
  const body = JSON.stringify({ name: 'x'.repeat(40000) });
  const res = await rawExchange(sg.port, [GET('/v1/demo/users/alice'), `PUT /v1/demo/users/rest1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`],
    { tls: { ca: ca(), ALPNProtocols: ['h2', 'http/1.1'] }, idle: 800 });
  assert.equal(res.protocol, 'TLSv1.3');
  assert.equal(res.alpn, 'http/1.1');
  const rs = parseResponses(res.data);
  assert.deepEqual(rs.map((r) => r.status), [401, 200]);
  const reqs = await backendHttp(be);
  assert.equal(reqs.length, 2);
  const put = reqs[1];
  assert.equal(Buffer.from(put.body, 'base64').toString(), body, 'the body arrives byte for byte');
  const h = Object.fromEntries(put.rawHeaders.reduce((a, v, i, arr) => (i % 2 ? a : [...a, [v.toLowerCase(), arr[i + 1]]]), []));
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.match(h.forwarded, /proto=https/);
  assert.equal((await be.state('demo')).users.rest1.name, body.slice(9, -2));
});

test('TLS client -> syncgate -> plain backend: the realtime socket over wss is enforced per frame', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, APP + tlsSection(pki.server), { tls: true });
  await realtimeRoundTrip(sg.port, { ca: ca() }, be);
});

test('plain client -> syncgate -> TLS backend: REST and realtime (wss upstream), SNI and verification against upstream_ca_file', async () => {
  const be = await backend(pki.server);
  const sg = await syncgate(be.port, `upstream_ca_file = ${pki.ca}\n` + APP, { upstream: 'https://localhost' });
  const res = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { idle: 800 });
  assert.equal(parseResponses(res.data)[0].status, 401);
  const hs = (await be.log()).filter((e) => e.kind === 'tls');
  assert.ok(hs.length >= 1);
  assert.equal(hs[0].servername, 'localhost', 'SNI names the upstream host');
  assert.equal(hs[0].alpn, 'http/1.1');
  await realtimeRoundTrip(sg.port, undefined, be);
});

test('TLS on both sides, with an address as the upstream host (checked against the IP SAN)', async () => {
  const be = await backend(pki.server);
  const sg = await syncgate(be.port, `upstream_ca_file = ${pki.ca}\n` + APP + tlsSection(pki.server), { tls: true, upstream: 'https://127.0.0.1' });
  const res = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { tls: { ca: ca() }, idle: 800 });
  assert.equal(parseResponses(res.data)[0].status, 401);
  const hs = (await be.log()).filter((e) => e.kind === 'tls');
  assert.equal(hs[0].servername, null, 'no SNI for an address (RFC 6066 section 3)');
  await realtimeRoundTrip(sg.port, { ca: ca() }, be);
});

test('upstream sessions are resumed by later connections', async () => {
  const be = await backend(pki.server);
  const sg = await syncgate(be.port, `upstream_ca_file = ${pki.ca}\n[limits]\nupstream_pool = 0\n`, { upstream: 'https://localhost' });
  for (let i = 0; i < 3; i++) {
    const res = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { idle: 800 });
    assert.equal(parseResponses(res.data)[0].status, 401);
  }
  const hs = (await be.log()).filter((e) => e.kind === 'tls');
  assert.equal(hs.length, 3, 'no pooling: one handshake per request');
  assert.equal(hs[0].resumed, false);
  assert.ok(hs.slice(1).some((h) => h.resumed), 'a later handshake resumed the session');
});

test('mutual TLS: the backend asks for a client certificate; upstream_cert/upstream_key provide it', async () => {
  const be = await backend({ ...pki.server, clientCa: pki.ca });
  const without = await syncgate(be.port, `upstream_ca_file = ${pki.ca}\n`, { upstream: 'https://localhost' });
  const r1 = await rawExchange(without.port, GET('/v1/demo/users/nobody'), { idle: 1500 });
  assert.equal(parseResponses(r1.data)[0].status, 502);
  const withCert = await syncgate(be.port, `upstream_ca_file = ${pki.ca}\nupstream_cert = ${pki.client.cert}\nupstream_key = ${pki.client.key}\n`, { upstream: 'https://localhost' });
  const r2 = await rawExchange(withCert.port, GET('/v1/demo/users/nobody'), { idle: 800 });
  assert.equal(parseResponses(r2.data)[0].status, 401);
  const hs = (await be.log()).filter((e) => e.kind === 'tls');
  assert.ok(hs.some((h) => h.clientCert === 'syncgate-client'));
});

for (const [what, cert, conf, why] of [
  ['an untrusted (self-signed) certificate', 'selfSigned', (p) => `upstream_ca_file = ${p.ca}\n`, /certificate verify failed: self[- ]signed certificate/],
  ['a certificate for another host', 'wrongHost', (p) => `upstream_ca_file = ${p.ca}\n`, /certificate verify failed: hostname mismatch/i],
  ['a certificate from a CA not in the system store (verification is on by default)', 'server', () => '', /certificate verify failed: unable to get local issuer certificate/],
]) {
  test(`upstream with ${what} -> 502, logged with the reason, nothing sent`, async () => {
    const be = await backend(pki[cert]);
    const sg = await syncgate(be.port, conf(pki), { upstream: 'https://localhost' });
    const res = await rawExchange(sg.port, GET('/v1/demo/users/alice'), { idle: 2000 });
    const [r] = parseResponses(res.data);
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).errorCode, 'BAD_GATEWAY');
    assert.match(JSON.parse(r.body).reasons[0], /TLS handshake failed/);
    await waitFor(() => sg.logs().some((l) => l.event === 'upstream_tls_failed'));
    const line = sg.logs().find((l) => l.event === 'upstream_tls_failed');
    assert.match(line.why, why);
    assert.equal((await backendHttp(be)).length, 0, 'no request reached the backend');
    const adm = await rawExchange(sg.port, GET('/v1/demo/realtime/x', 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'), { idle: 2000 });
    assert.equal(parseResponses(adm.data)[0].status, 502, 'the realtime upgrade is refused the same way');
  });
}

test('upstream_verify = off accepts an untrusted backend (and says so at startup)', async () => {
  const be = await backend(pki.selfSigned);
  const sg = await syncgate(be.port, 'upstream_verify = off\n', { upstream: 'https://localhost' });
  const res = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { idle: 800 });
  assert.equal(parseResponses(res.data)[0].status, 401);
  assert.ok(sg.logs().some((l) => l.event === 'startup' && /upstream_verify = off/.test(l.note || '')));
});

test('refused: TLS 1.0 and 1.1 clients, a 1.2 client under min_version = 1.3, and a client offering only h2', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, tlsSection(pki.server), { tls: true });
  for (const v of ['TLSv1', 'TLSv1.1']) {
    const res = await rawExchange(sg.port, GET('/v1/demo/users/alice'), { tls: { ca: ca(), minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' }, idle: 2000 });
    assert.ok(res.tlsError, `${v} must fail`);
    assert.equal(res.protocol, undefined);
    assert.equal(res.data.length, 0);
  }
  await waitFor(() => sg.logs().filter((l) => l.event === 'tls_handshake_failed' && /unsupported protocol/.test(l.why)).length >= 2);
  const h2only = await rawExchange(sg.port, GET('/'), { tls: { ca: ca(), ALPNProtocols: ['h2'] }, idle: 2000 });
  assert.ok(h2only.tlsError, 'no application protocol in common');
  assert.match(String(h2only.tlsError.message), /no application protocol|alert/i);

  const sg13 = await syncgate(be.port, tlsSection(pki.server, 'min_version = 1.3\n'), { tls: true });
  const r12 = await rawExchange(sg13.port, GET('/'), { tls: { ca: ca(), maxVersion: 'TLSv1.2' }, idle: 2000 });
  assert.ok(r12.tlsError);
  const r13 = await rawExchange(sg13.port, GET('/v1/demo/users/nobody'), { tls: { ca: ca() }, idle: 800 });
  assert.equal(r13.protocol, 'TLSv1.3');
  assert.equal((await backendHttp(be)).length, 1, 'only the TLS 1.3 request reached the backend');
});

test('plain HTTP to the TLS port gets a plain 400 saying so, then the connection closes', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, tlsSection(pki.server), { tls: true });
  const res = await rawExchange(sg.port, GET('/v1/demo/users/alice'), { idle: 3000 });
  assert.ok(res.closed);
  const [r] = parseResponses(res.data);
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.body).errorCode, 'TLS_REQUIRED');
  assert.equal((await backendHttp(be)).length, 0);
});

test('a client that never finishes the handshake is closed after tls_handshake', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, tlsSection(pki.server) + '[limits]\ntls_handshake = 300ms\n', { tls: true });
  const t0 = Date.now();
  const res = await rawExchange(sg.port, Buffer.from([0x16, 0x03, 0x01]), { idle: 5000 });
  assert.ok(res.closed);
  assert.ok(Date.now() - t0 < 4000);
  await waitFor(() => sg.logs().some((l) => l.event === 'tls_handshake_failed' && /timed out/.test(l.why)));
});

test('session resumption: a returning client resumes its session', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, tlsSection(pki.server), { tls: true });
  const first = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { tls: { ca: ca() }, idle: 500 });
  assert.ok(first.session, 'a session ticket was issued');
  assert.equal(first.resumed, false);
  const again = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { tls: { ca: ca(), session: first.session }, idle: 500 });
  assert.equal(again.resumed, true);
  assert.equal(parseResponses(again.data)[0].status, 401);
});

test('SIGHUP: a broken certificate keeps the old one serving (logged); a good one serves new connections, open ones are untouched', async () => {
  const be = await backend();
  const dir = fs.mkdtempSync(`${pki.dir}/live-`);
  const cert = `${dir}/cert.pem`, key = `${dir}/key.pem`;
  fs.copyFileSync(pki.server.cert, cert);
  fs.copyFileSync(pki.server.key, key);
  const sg = await syncgate(be.port, tlsSection({ cert, key }), { tls: true });
  const serial = async () => (await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { tls: { ca: ca() }, idle: 300 })).cert.subject.O;
  assert.equal(await serial(), 'syncgate tests');

  // a kept-alive connection opened before the reloads
  const tls = await import('node:tls');
  const open = tls.connect({ port: sg.port, host: '127.0.0.1', servername: 'localhost', ca: ca() });
  await new Promise((r) => open.on('secureConnect', r));
  const replies = [];
  open.on('data', (d) => replies.push(d));

  fs.copyFileSync(pki.broken, cert);
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().some((l) => l.event === 'reload_failed'));
  assert.match(sg.logs().find((l) => l.event === 'reload_failed').why, /\[tls\] cert .*cert\.pem/);
  assert.equal(await serial(), 'syncgate tests', 'the old certificate still serves');

  fs.copyFileSync(pki.server2.cert, cert);
  fs.copyFileSync(pki.server2.key, key);
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().some((l) => l.event === 'reload'));
  assert.equal(await serial(), 'syncgate tests second', 'new connections get the new certificate');
  assert.equal(open.getPeerCertificate().subject.O, 'syncgate tests');
  open.write(GET('/v1/demo/users/nobody'));
  await waitFor(() => parseResponses(Buffer.concat(replies)).length === 1);
  assert.equal(parseResponses(Buffer.concat(replies))[0].status, 401, 'the open connection still works');
  open.destroy();
});

test('syncgate -t loads the certificates: a missing key or a broken certificate is reported', () => {
  const dir = fs.mkdtempSync(`${pki.dir}/conf-`);
  const conf = (tlsPart) => { const f = `${dir}/c${Math.random()}.conf`; fs.writeFileSync(f, `[syncgate]\nlisten = 127.0.0.1:1 tls\nupstream = http://127.0.0.1:2\n${tlsPart}`); return f; };
  const ok = spawnSync(SYNCGATE, ['-t', '-c', conf(tlsSection(pki.server))], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  const broken = spawnSync(SYNCGATE, ['-t', '-c', conf(tlsSection({ cert: pki.broken, key: pki.server.key }))], { encoding: 'utf8' });
  assert.equal(broken.status, 1);
  assert.match(broken.stderr, /\[tls\] cert .*broken\.pem/);
  const mismatch = spawnSync(SYNCGATE, ['-t', '-c', conf(tlsSection({ cert: pki.server.cert, key: pki.client.key }))], { encoding: 'utf8' });
  assert.equal(mismatch.status, 1);
  assert.match(mismatch.stderr, /mismatch/);
  const nokey = spawnSync(SYNCGATE, ['-t', '-c', conf(`[tls]\ncert = ${pki.server.cert}\n`)], { encoding: 'utf8' });
  assert.equal(nokey.status, 1);
  assert.match(nokey.stderr, /needs cert and key/);
});

test('a plain and a TLS listener side by side', async () => {
  const be = await backend();
  const sg = await syncgate(be.port, tlsSection(pki.server), { tls: true });
  // a second, plain listener: rewrite the config and restart on it
  const plainPort = await new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
  const text = fs.readFileSync(sg.file, 'utf8').replace(/listen = (\S+) tls/, `listen = $1 tls, 127.0.0.1:${plainPort}`);
  await sg.stop();
  fs.writeFileSync(sg.file, text);
  const { spawn } = await import('node:child_process');
  const proc = spawn(SYNCGATE, ['-c', sg.file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  cleanup.push(async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.exitCode !== null ? r() : proc.on('exit', r)); });
  await waitFor(() => /"event":"ready"/.test(err));
  const a = await rawExchange(sg.port, GET('/v1/demo/users/nobody'), { tls: { ca: ca() }, idle: 500 });
  const b = await rawExchange(plainPort, GET('/v1/demo/users/nobody'), { idle: 500 });
  assert.equal(parseResponses(a.data)[0].status, 401);
  assert.equal(parseResponses(b.data)[0].status, 401);
});

test('TLS on both sides: 3 MiB up and 5 MB down arrive whole; a 512 KiB WebSocket message is relayed both ways', async () => {
  const be = await backend(pki.server);
  const sg = await syncgate(be.port, `upstream_ca_file = ${pki.ca}\n` + tlsSection(pki.server), { tls: true, upstream: 'https://localhost' });
  const big = Buffer.alloc(3 * 1024 * 1024, 'abcdefghijklmnopqrstuvwxyz');
  const req = Buffer.concat([Buffer.from(`PUT /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: ${big.length}\r\n\r\n`), big]);
  const up = await rawExchange(sg.port, req, { tls: { ca: ca() }, idle: 1500 });
  const [r1] = parseResponses(up.data);
  assert.equal(r1.status, 200);
  assert.ok(r1.body.equals(big), 'the echo is the body, byte for byte');
  const sent = (await be.rawAll()).toString('latin1');
  assert.ok(sent.endsWith(big.toString('latin1')), 'the backend read the same bytes');
  const down = await rawExchange(sg.port, GET('/chunked/5000000'), { tls: { ca: ca() }, idle: 1500 });
  const [r2] = parseResponses(down.data);
  assert.equal(r2.status, 200);
  assert.equal(r2.body.length, 5000000);

  const ws = await RawWs.open(sg.port, '/echo-ws', { tls: { ca: ca() } });
  const payload = 'z'.repeat(512 * 1024);
  ws.sendText(payload);
  const back = await ws.next((f) => f.opcode === 1, 10000);
  assert.ok(back, 'the echo came back');
  assert.equal(back.payload.length, payload.length);
  ws.destroy();
});

test('/readyz over an https upstream: ready with a verified backend, 503 naming the reason without', async () => {
  const good = await backend(pki.server), bad = await backend(pki.wrongHost);
  const ready = async (be) => {
    const admin = await new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
    await syncgate(be.port, `upstream_ca_file = ${pki.ca}\n[admin]\nlisten = 127.0.0.1:${admin}\n`, { upstream: 'https://localhost' });
    const res = await rawExchange(admin, GET('/readyz'), { idle: 3000 });
    return parseResponses(res.data)[0];
  };
  assert.equal((await ready(good)).status, 200);
  const r = await ready(bad);
  assert.equal(r.status, 503);
  assert.match(JSON.parse(r.body).why, /TLS handshake failed: certificate verify failed: hostname mismatch/i);
});

test('an https backend that ends its response by closing: the client gets it whole, then is closed', async () => {
  const { createServer } = await import('node:tls');
  const srv = createServer({ cert: fs.readFileSync(pki.server.cert), key: fs.readFileSync(pki.server.key) },
    (s) => s.on('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-eof')));
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => srv.close(r)));
  const sg = await syncgate(srv.address().port, `upstream_ca_file = ${pki.ca}\n`, { upstream: 'https://localhost' });
  for (let i = 0; i < 20; i++) {
    const res = await rawExchange(sg.port, GET('/x'), { idle: 2000 });
    assert.ok(res.closed, `round ${i}: closed`);
    assert.match(res.data.toString(), /Connection: close\r\n\r\nuntil-eof$/);
  }
});

test('a storm of new TLS connections (accepted a few per loop turn) is served whole, with max_connections below it', { timeout: 30000 }, async () => {
  const be = await backend();
  const sg = await syncgate(be.port, APP + tlsSection(pki.server) + '[limits]\nmax_connections = 60\n', { tls: true });
  const one = () => rawExchange(sg.port, GET('/bytes/5', 'Connection: close\r\n'), { tls: { ca: ca() }, idle: 3000 })
    .then((res) => parseResponses(res.data)[0]?.body.toString());
  // 200 at once: past max_connections, accepting pauses and resumes as connections close
  const bodies = await Promise.all(Array.from({ length: 200 }, one));
  assert.equal(bodies.filter((b) => b === 'xxxxx').length, 200, 'every connection was accepted and answered');
});

test('/metrics says when the listeners\' certificate expires', async () => {
  const be = await backend();
  const { freePort } = await import('../lib/harness.mjs');
  const ap = await freePort();
  const sg = await syncgate(be.port, `[admin]\nlisten = 127.0.0.1:${ap}\n` + APP + tlsSection(pki.server), { tls: true });
  const end = (cert) => {
    const out = spawnSync('openssl', ['x509', '-in', cert, '-noout', '-enddate'], { encoding: 'utf8' }).stdout;
    return Math.floor(Date.parse(out.trim().replace(/^notAfter=/, '')) / 1000);
  };
  const gauge = async () => {
    const m = await (await fetch(`http://127.0.0.1:${ap}/metrics`)).text();
    const x = m.match(/^syncgate_tls_certificate_expiry_timestamp_seconds (\d+)$/m);
    return x ? Number(x[1]) : NaN;
  };
  assert.equal(await gauge(), end(pki.server.cert));
  assert.ok(await gauge() > Date.now() / 1000, 'in the future');
});
