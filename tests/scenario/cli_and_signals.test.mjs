// The command line (-t, --version, --help) and the signals: SIGTERM drains in-flight requests
// and exits 0; SIGHUP applies a changed file and keeps the old policy on a broken one.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SYNCGATE, ROOT, startBackend, startSyncgate, rawExchange, parseResponses, freePort, sleep, waitFor } from '../lib/harness.mjs';
import { RawWs } from '../lib/rawws.mjs';

const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

const run = (...args) => spawnSync(SYNCGATE, args, { encoding: 'utf8' });

test('--version and --help', () => {
  const v = run('--version');
  assert.equal(v.status, 0);
  // the version, the commit and kind of build, and the libraries it runs with
  assert.match(v.stdout, /^syncgate \d+\.\d+\.\d+ \(commit (?:[0-9a-f]+|unknown), [^)]*build[^)]*\)\nOpenSSL 3\.[^\n]+\nlibevent 2\.1[^\n]*\n$/);
  const h = run('--help');
  assert.equal(h.status, 0);
  assert.match(h.stdout, /usage: syncgate \[-t \| -T\] -c FILE/);
  const none = run();
  assert.equal(none.status, 2);
  assert.match(none.stderr, /usage/);
});

test('-t accepts the shipped config and reports FILE:LINE for a bad one', () => {
  const ok = run('-t', '-c', path.join(ROOT, 'conf/syncgate.conf'));
  assert.equal(ok.status, 0, ok.stderr);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgt-'));
  const bad = path.join(dir, 'bad.conf');
  fs.writeFileSync(bad, '[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n[app:x]\nuser_sync = sometimes\n');
  const r = run('-t', '-c', bad);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `${bad}:5: user_sync: 'sometimes' is not on or off\n`);
  // a later duplicate turning protection off is refused by -t, naming both lines
  fs.writeFileSync(bad, '[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n[app:x]\nuser_sync = off\n[app:y]\n[app:x]\nuser_sync = on\n');
  const dup = run('-t', '-c', bad);
  assert.equal(dup.status, 1);
  assert.equal(dup.stderr, `${bad}:7: section '[app:x]' again (first at line 4): each may appear once\n`);
  // what used to pass -t and then fail at start: each names the line to fix
  const check = (text) => { fs.writeFileSync(bad, text); return run('-t', '-c', bad); };
  let r2 = check('[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://no-such-host.invalid:2\n');
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, new RegExp(`^${bad}:3: upstream: cannot resolve 'no-such-host.invalid'`));
  r2 = check('[syncgate]\nlisten = 127.0.0.1:1 tls\nupstream = http://127.0.0.1:2\n[tls]\ncert = /nonexistent/cert.pem\nkey = /nonexistent/key.pem\n');
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, new RegExp(`^${bad}:5: \\[tls\\] cert /nonexistent/cert.pem`));
  r2 = check('[syncgate]\n  listen = 127.0.0.1:1\n  upstream = http://127.0.0.1:2\n[admin]\n  listen = 127.0.0.1:1\n');
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, new RegExp(`^${bad}:5: \\[admin\\] listen 127.0.0.1:1 is also a \\[syncgate\\] listen address`));
  r2 = run('-t', '-c', dir);
  assert.equal(r2.status, 1);
  assert.equal(r2.stderr, `${dir}:0: cannot open: Is a directory\n`);
  // started for real (not -t), the same error is a JSON log line like every other
  fs.writeFileSync(bad, '[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n[app:x]\nuser_sync = sometimes\n');
  const started = run('-c', bad);
  assert.equal(started.status, 1);
  const line = JSON.parse(started.stderr.trim());
  assert.equal(line.event, 'startup');
  assert.equal(line.level, 'error');
  assert.equal(line.why, `${bad}:5: user_sync: 'sometimes' is not on or off`);
});

test('SIGTERM: in-flight requests finish, new connections are refused, exit 0', async () => {
  const port = await freePort();
  const srv = net.createServer((s) => s.on('data', () => setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow'), 600)));
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => srv.close(r)));
  const sg = await startSyncgate(port);
  const idle = net.connect(sg.port, '127.0.0.1'); // an idle keep-alive connection is closed at once
  await new Promise((r) => idle.on('connect', r));
  const inflight = rawExchange(sg.port, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n', { idle: 3000 });
  await sleep(200);
  const exited = new Promise((r) => sg.proc.on('exit', (code) => r(code)));
  sg.signal('SIGTERM');
  await sleep(100);
  const refused = await new Promise((r) => { const s = net.connect(sg.port, '127.0.0.1'); s.on('connect', () => { s.destroy(); r(false); }); s.on('error', () => r(true)); });
  assert.ok(refused, 'listener closed');
  const res = await inflight;
  const [resp] = parseResponses(res.data);
  assert.equal(resp.status, 200);
  assert.equal(resp.body.toString(), 'slow');
  assert.equal(resp.h('connection'), 'close');
  assert.equal(await exited, 0);
  // the drained request's access line is written, before the exit line
  const events = sg.logs().map((l) => l.event);
  const at = events.lastIndexOf('access');
  assert.ok(at >= 0 && sg.logs()[at].request === 'GET /x' && sg.logs()[at].status === 200, JSON.stringify(sg.logs().slice(-4)));
  assert.ok(at < events.lastIndexOf('exit'), 'access lines flushed before "exit"');
  idle.destroy();
});

test('SIGHUP applies a changed file; a broken file keeps the old policy', async () => {
  const be = await startBackend();
  cleanup.push(() => be.stop());
  const sg = await startSyncgate(be.port, '[app:demo]\nuser_sync = on\n');
  cleanup.push(() => sg.stop());
  const put = async () => parseResponses((await rawExchange(sg.port, 'PUT /v1/demo/users/u1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}', { idle: 300 })).data)[0].status;
  // no Authorization: a browser-class credential, so the switch decides
  assert.equal(await put(), 401); // user sync on: forwarded, the backend wants credentials
  sg.writeConf('[app:demo]\nuser_sync = off\n');
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().some((l) => l.event === 'reload'));
  assert.equal(await put(), 403);
  fs.writeFileSync(sg.file, '[syncgate]\nlisten = nowhere\n');
  sg.signal('SIGHUP');
  await waitFor(() => sg.logs().some((l) => l.event === 'reload_failed'));
  const line = sg.logs().find((l) => l.event === 'reload_failed');
  assert.match(line.why, /listen: 'nowhere' is not HOST:PORT/);
  assert.equal(await put(), 403, 'old policy still in force');
});

test('a second process cannot listen on an address syncgate holds (EADDRINUSE, exit 1); workers of one process share it', async () => {
  const be = await startBackend();
  cleanup.push(() => be.stop());
  const first = await startSyncgate(be.port, 'workers = 2\n[app:demo]\nuser_sync = off\n');
  cleanup.push(() => first.stop());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgb-'));
  const conf = path.join(dir, 'second.conf');
  // another policy on the same address: it would have taken a share of the connections
  fs.writeFileSync(conf, `[syncgate]\nlisten = 127.0.0.1:${first.port}\nupstream = http://127.0.0.1:${be.port}\n[app:demo]\nuser_sync = on\n`);
  const second = spawnSync(SYNCGATE, ['-c', conf], { encoding: 'utf8', timeout: 10000 });
  assert.equal(second.status, 1, second.stderr);
  const line = second.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.why === 'cannot listen');
  assert.ok(line, second.stderr);
  assert.equal(line.addr, `127.0.0.1:${first.port}`);
  assert.match(line.error, /in use/);
  // every connection still meets the first one's policy, on both of its workers
  for (let i = 0; i < 20; i++) {
    const r = parseResponses((await rawExchange(first.port, 'PUT /v1/demo/users/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer u\r\nConnection: close\r\n\r\n', { idle: 1000 })).data);
    assert.equal(r[0].status, 403);
  }
});

test('SIGTERM: open realtime sockets get a 1001 close at once (not at the end of the grace period)', async () => {
  const be = await startBackend();
  cleanup.push(() => be.stop());
  const sg = await startSyncgate(be.port, '[limits]\nshutdown_grace = 20s\n');
  const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
  ws.sendText('[0,"GET","/ping",{},{}]');
  await ws.json(0);
  const exited = new Promise((r) => sg.proc.on('exit', (code) => r(code)));
  const t0 = Date.now();
  sg.signal('SIGTERM');
  const c = await ws.closeFrame();
  assert.equal(c.code, 1001);
  assert.ok(Date.now() - t0 < 5000, 'the close came at the start of the drain');
  assert.ok(await ws.waitClosed());
  assert.equal(await exited, 0);
  assert.ok(Date.now() - t0 < 10000, 'the process did not wait out the grace period');
});

test('-t warns about an expired certificate (it still loads: a reload must be able to replace it)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgexp-'));
  const sh = (args) => { const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' }); assert.equal(r.status, 0, r.stderr); };
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '01\n');
  fs.writeFileSync(path.join(dir, 'ca.cnf'), '[ca]\ndefault_ca=d\n[d]\ndir=.\ndatabase=./index.txt\nnew_certs_dir=.\nserial=./serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n');
  sh(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', 'k.pem', '-out', 'csr.pem']);
  sh(['ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile', 'k.pem', '-in', 'csr.pem', '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-out', 'c.pem']);
  const conf = path.join(dir, 'sg.conf');
  fs.writeFileSync(conf, `[syncgate]\nlisten = 127.0.0.1:1 tls\nupstream = http://127.0.0.1:2\n[tls]\ncert = ${dir}/c.pem\nkey = ${dir}/k.pem\n`);
  const r = run('-t', '-c', conf);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /configuration ok/);
  const warn = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.event === 'certificate');
  assert.ok(warn, r.stderr);
  assert.equal(warn.level, 'warn');
  assert.match(warn.why, /expired/);
  assert.equal(warn.file, `${dir}/c.pem`);
});

test('syncgate token prints a user token the realtime socket accepts under identity = require', async () => {
  const be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  cleanup.push(() => be.stop());
  const sg = await startSyncgate(be.port, '[app:demo]\nidentity = require\nsecret_key = sk_test_demo\n');
  cleanup.push(() => sg.stop());
  const t = run('token', '-c', sg.file, '--app', 'demo', '--user', 'alice', '--ttl', '300');
  assert.equal(t.status, 0, t.stderr);
  const token = t.stdout.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token }, {}]));
  assert.equal((await ws.json(0))[1], 200);
  ws.sendText(JSON.stringify([1, 'POST', '/session/renew', { token: token.slice(0, -2) + 'xx' }, {}]));
  assert.equal((await ws.json(1))[1], 401, 'a tampered token is refused');
  ws.destroy();
  const bad = run('token', '-c', sg.file, '--app', 'nosuch', '--user', 'alice');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /no \[app:nosuch\] section with a secret key/);
});

test('watch_config: a ConfigMap-style update (a swapped ..data symlink) is reloaded without a signal', async () => {
  const be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  cleanup.push(() => be.stop());
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-watch-'));
  const conf = (sync) => `[syncgate]\nlisten = 127.0.0.1:${port}\nupstream = http://127.0.0.1:${be.port}\nwatch_config = on\n[app:demo]\nuser_sync = ${sync}\nsecret_key = sk_test_demo\n`;
  // the layout kubelet makes: FILE -> ..data/FILE, ..data -> ..<timestamp>
  const version = (name, sync) => { fs.mkdirSync(path.join(dir, name)); fs.writeFileSync(path.join(dir, name, 'syncgate.conf'), conf(sync)); };
  version('..v1', 'on');
  fs.symlinkSync('..v1', path.join(dir, '..data'));
  fs.symlinkSync('..data/syncgate.conf', path.join(dir, 'syncgate.conf'));
  const { spawn } = await import('node:child_process');
  const proc = spawn(SYNCGATE, ['-c', path.join(dir, 'syncgate.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  cleanup.push(async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.on('exit', r)); fs.rmSync(dir, { recursive: true, force: true }); });
  await waitFor(() => err.includes('"event":"ready"'));
  const put = async () => parseResponses((await rawExchange(port, 'PUT /v1/demo/users/alice HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer not-a-key\r\nContent-Length: 2\r\n\r\n{}', { idle: 300 })).data)[0].status;
  const before = await put();
  assert.notEqual(before, 403, 'user sync on: not refused by syncgate');
  // kubelet's atomic update: a new version directory, then ..data renamed over
  version('..v2', 'off');
  fs.symlinkSync('..v2', path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  await waitFor(() => err.includes('"event":"reload"'), { timeout: 5000 });
  assert.ok(err.includes('"event":"config_changed"'));
  assert.equal(await put(), 403, 'the new file applies');
  // an update that changes nothing (the same content swapped in) reloads nothing
  const reloads = () => (err.match(/"event":"reload"/g) || []).length;
  const n = reloads();
  version('..v3', 'off');
  fs.symlinkSync('..v3', path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  await sleep(700);
  assert.equal(reloads(), n);
  assert.equal(await put(), 403);
});
