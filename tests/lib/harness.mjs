// Test harness: start the reference backend and syncgate as real processes on loopback,
// talk to them over real sockets. Used by tests/scenario, tests/interop and tests/browser.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SYNCGATE = process.env.SYNCGATE_BIN || path.join(ROOT, 'build/syncgate');

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitPort(port, proc, what) {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited early (${proc.exitCode})`);
    const ok = await new Promise((res) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); res(true); });
      s.on('error', () => res(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} did not listen on ${port}`);
}

// TLS: {cert, key, clientCa?} makes the backend serve https/wss (tests/lib/tlsca.mjs).
// ORIGINS: hosted-origin listeners besides the main one (server.js --origin), each
// {kind: 'realtime' | 'app' | 'rest', host?: the Host it insists on, tls?: {cert, key}, or true
// for TLS's cert}; the result's `origins` maps each kind to its port.
export async function startBackend({ apps = { demo: 'sk_test_demo' }, keepaliveMs, tls, origins = [] } = {}) {
  const port = await freePort(), control = await freePort();
  const args = [path.join(ROOT, 'tests/backend/server.js'), '--listen', `127.0.0.1:${port}`, '--control', `127.0.0.1:${control}`];
  for (const [id, key] of Object.entries(apps)) args.push('--app', `${id}=${key}`);
  if (keepaliveMs) args.push('--keepalive-ms', String(keepaliveMs));
  if (tls) {
    args.push('--tls-cert', tls.cert, '--tls-key', tls.key);
    if (tls.clientCa) args.push('--tls-client-ca', tls.clientCa);
  }
  const originPorts = {};
  for (const og of origins) {
    originPorts[og.kind] = await freePort();
    let spec = `${og.kind}=127.0.0.1:${originPorts[og.kind]}`;
    if (og.host) spec += `,host=${og.host}`;
    if (og.tls === true) spec += ',tls';
    else if (og.tls) spec += `,tls,cert=${og.tls.cert},key=${og.tls.key}`;
    args.push('--origin', spec);
  }
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  await waitPort(control, proc, 'backend');
  const ctl = async (method, p, body) => {
    const r = await fetch(`http://127.0.0.1:${control}${p}`, { method, body: body ? JSON.stringify(body) : undefined });
    return r.json();
  };
  return {
    port, control, proc, apps, origins: originPorts,
    log: () => ctl('GET', '/log'),
    raw: async () => { const r = await ctl('GET', '/raw'); return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Buffer.from(v, 'base64')])); },
    rawAll: async () => Buffer.concat(Object.values(await ctl('GET', '/raw')).map((v) => Buffer.from(v, 'base64'))),
    reset: () => ctl('POST', '/reset'),
    clearLog: () => ctl('POST', '/clear-log'),
    seed: (s) => ctl('POST', '/seed', s),
    state: (appId) => ctl('GET', `/state?appId=${appId}`),
    stop: async () => { if (proc.exitCode === null) { proc.kill('SIGTERM'); await new Promise((r) => proc.on('exit', r)); } },
    stderr: () => err,
  };
}

// Starts syncgate in front of UPSTREAM_PORT with CONF (sections appended to [syncgate]).
// UPSTREAM: the upstream's scheme and host ('https://localhost' for a TLS backend); TLS: the
// listener is marked tls (CONF then brings a [tls] section).
export async function startSyncgate(upstreamPort, conf = '', { env = {}, upstream = 'http://127.0.0.1', tls = false, listenFlags = '' } = {}) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-'));
  const file = path.join(dir, 'syncgate.conf');
  const head = `[syncgate]\nlisten = 127.0.0.1:${port}${tls ? ' tls' : ''}${listenFlags ? ` ${listenFlags}` : ''}\nupstream = ${upstream}:${upstreamPort}\n`;
  const text = `${head}${conf}\n`;
  fs.writeFileSync(file, text);
  const proc = spawn(SYNCGATE, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  try {
    await waitPort(port, proc, 'syncgate');
  } catch (e) {
    await sleep(50); // the rest of its stderr
    e.message += `:\n${err.slice(-2000)}`;
    throw e;
  }
  return {
    port, proc, file, dir,
    logs: () => err.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return { raw: l }; } }),
    stderr: () => err,
    signal: (s) => proc.kill(s),
    // Stops syncgate; fails if it crashed or a sanitizer reported anything (ASan builds).
    stop: async (sig = 'SIGTERM') => {
      let code = proc.exitCode;
      if (code === null && proc.signalCode === null) {
        proc.kill(sig);
        code = await new Promise((r) => proc.on('exit', (c) => r(c)));
      }
      const report = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.exec(err);
      if (report) throw new Error(`sanitizer report from syncgate:\n${err.slice(Math.max(0, report.index - 200), report.index + 4000)}`);
      if (proc.signalCode && proc.signalCode !== sig) throw new Error(`syncgate died of ${proc.signalCode}`);
      return code;
    },
    writeConf: (more) => fs.writeFileSync(file, `${head}${more}\n`),
  };
}

// Sends BYTES (a Buffer or string, or an array of pieces sent with PAUSE ms between) on a
// new connection; resolves with everything received until the peer closes or IDLE ms pass.
// TLS: options for tls.connect (ca, servername, minVersion, session, ...): the exchange runs
// over TLS and the result also has the negotiated `protocol`, `alpn`, `cert` (the server's),
// `session` (for resumption), `resumed`, or `tlsError` when the handshake failed.
export function rawExchange(port, bytes, { idle = 1500, pause = 0, halfClose = false, tls: tlsOpts } = {}) {
  return new Promise((resolve) => {
    const s = tlsOpts ? tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', ...tlsOpts }) : net.connect(port, '127.0.0.1');
    const chunks = [], t0 = Date.now(), info = {};
    let timer, closed = false, firstMs = null;
    if (tlsOpts) {
      s.on('secureConnect', () => Object.assign(info, { protocol: s.getProtocol(), alpn: s.alpnProtocol, cert: s.getPeerCertificate(), resumed: s.isSessionReused() }));
      s.on('session', (sess) => { info.session = sess; });
      s.on('error', (e) => { if (!info.protocol) info.tlsError = e; });
    }
    const done = () => { clearTimeout(timer); s.destroy(); resolve({ data: Buffer.concat(chunks), closed, firstMs, ...info }); };
    const arm = () => { clearTimeout(timer); timer = setTimeout(done, idle); };
    s.on('data', (d) => { if (firstMs === null) firstMs = Date.now() - t0; chunks.push(d); arm(); });
    s.on('end', () => { closed = true; done(); });
    s.on('close', () => { closed = true; done(); });
    s.on('error', () => { closed = true; done(); });
    s.on(tlsOpts ? 'secureConnect' : 'connect', async () => {
      const pieces = Array.isArray(bytes) ? bytes : [bytes];
      for (const p of pieces) {
        if (s.destroyed) break;
        s.write(p);
        if (pause) await sleep(pause);
      }
      if (halfClose) s.end();
      arm();
    });
  });
}

// Parses consecutive HTTP/1.1 responses out of BUF (Content-Length or chunked bodies, or to the end).
export function parseResponses(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const head = buf.subarray(off, end).toString('latin1');
    const [statusLine, ...lines] = head.split('\r\n');
    const status = Number(statusLine.split(' ')[1]);
    const headers = [];
    for (const l of lines) { const i = l.indexOf(':'); headers.push([l.slice(0, i), l.slice(i + 1).trim()]); }
    const h = (n) => { const e = headers.find(([k]) => k.toLowerCase() === n); return e ? e[1] : undefined; };
    let p = end + 4, body;
    if (status < 200 || status === 204 || status === 304) body = Buffer.alloc(0);
    else if (h('content-length') !== undefined) { const n = Number(h('content-length')); body = buf.subarray(p, p + n); p += n; }
    else if ((h('transfer-encoding') || '').toLowerCase() === 'chunked') {
      const parts = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le < 0) { p = buf.length; break; }
        const n = parseInt(buf.subarray(p, le).toString(), 16);
        p = le + 2;
        if (n === 0) { const te = buf.indexOf('\r\n\r\n', p - 2); p = te < 0 ? buf.length : te + 4; break; }
        parts.push(buf.subarray(p, p + n)); p += n + 2;
      }
      body = Buffer.concat(parts);
    } else { body = buf.subarray(p); p = buf.length; }
    out.push({ status, statusLine, headers, h, head, body });
    off = p;
  }
  return out;
}

export async function waitFor(fn, { timeout = 5000, every = 25 } = {}) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeout) throw new Error('waitFor: timed out');
    await sleep(every);
  }
}

// Open fds of a process (Linux): for leak checks.
export const openFds = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;

// 1 if process PID holds a TCP socket whose peer is 127.0.0.1:PEERPORT (its end of one client
// connection), found by inode in /proc/net/tcp: unlike a count of open files, other sockets
// (a pooled backend connection that came or went) do not move it.
export function holdsSocketFrom(pid, peerPort) {
  const inodes = new Set();
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && parseInt(f[2].split(':')[1], 16) === peerPort) inodes.add(f[9]);
  }
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1])) return true;
    } catch { /* closed meanwhile */ }
  }
  return false;
}

// The app sections the locked-field suites share: rej (on_locked = reject), strip, and rep
// (strip in report mode), each with the lines LOCKS and its secret key from KEYS.
export const lockedAppsConf = (locks, keys) =>
  `[app:rej]\n${locks}secret_key = ${keys.rej}\n` +
  `[app:strip]\n${locks}on_locked = strip\nsecret_key = ${keys.strip}\n` +
  `[app:rep]\n${locks}on_locked = strip\nmode = report\nsecret_key = ${keys.rep}\n`;
