// A real redis-server for the fleet tests (issue 19): started on a free loopback port with its
// own temporary directory, nothing persisted (--save '' --appendonly no), optionally with a
// password; driven over raw RESP (no npm client). Every server started here is stopped: by
// stop() in the test's after hook, by an 'exit' handler if the test process ends another way,
// and by a watchdog shell that SIGKILLs it if the test process is killed outright (a ctest
// timeout). startForwarder() is a TCP relay in front of it that a test can cut and restore, to
// take one syncgate away from Redis while the others keep it.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep } from './harness.mjs';

export const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';

const live = new Set(); // child processes (redis-server and watchdogs) still running
const dirs = new Set(); // the servers' directories, removed when this process exits
process.on('exit', () => {
  for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  for (const d of dirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* in use */ } }
});

// True when a redis-server can be run here (tests skip with a reason otherwise).
export const haveRedis = () => spawnSync('sh', ['-c', `command -v ${REDIS_SERVER}`]).status === 0;

// ---- RESP ----

export class RedisError extends Error {}

// One RESP command: an array of bulk strings.
export function encode(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

// Parses one reply at BUF[OFF]: {value, end}, or null when BUF does not hold all of it yet.
// Simple strings and bulk strings are JS strings (null for a null bulk), integers numbers,
// arrays arrays (null for a null array), errors RedisError objects (not thrown).
export function parseReply(buf, off = 0) {
  if (off >= buf.length) return null;
  const le = buf.indexOf('\r\n', off);
  if (le < 0) return null;
  const type = String.fromCharCode(buf[off]);
  const line = buf.toString('utf8', off + 1, le);
  const next = le + 2;
  switch (type) {
    case '+': return { value: line, end: next };
    case '-': return { value: new RedisError(line), end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.end;
      }
      return { value: out, end: p };
    }
    default: throw new Error(`RESP: unexpected type byte ${JSON.stringify(type)}`);
  }
}

// Sends COMMANDS (arrays of arguments) pipelined on a new connection to PORT and resolves with
// their replies in order; rejects when the connection fails or TIMEOUT ms pass.
export function exchange(port, commands, { timeout = 3000, host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    let buf = Buffer.alloc(0), off = 0;
    const replies = [];
    const t = setTimeout(() => { s.destroy(); reject(new Error(`redis on ${port}: no reply in ${timeout} ms`)); }, timeout);
    s.on('connect', () => s.write(Buffer.concat(commands.map(encode))));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parseReply(buf, off);
        if (!r) break;
        replies.push(r.value);
        off = r.end;
      }
      if (replies.length >= commands.length) { clearTimeout(t); s.destroy(); resolve(replies); }
    });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.on('close', () => { clearTimeout(t); if (replies.length < commands.length) reject(new Error(`redis on ${port}: closed after ${replies.length} replies`)); });
  });
}

// ---- the server ----

// Starts redis-server. PASSWORD: --requirepass (cmd() then authenticates). Resolves with
// {port, dir, password, pid, cmd(...args), subscribe(channel), stop(), kill(), restart(),
// pause(), resume(), running(), paused(), log()}.
export async function startRedis({ password, port: wantPort } = {}) {
  const port = wantPort || await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-redis-'));
  dirs.add(dir);
  let proc = null, watchdog = null, out = '', paused = false;

  const args = () => {
    const a = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'notice'];
    if (password) a.push('--requirepass', password);
    return a;
  };

  // A command on a new connection (AUTH first with a password): its reply; a Redis error
  // reply rejects with a RedisError.
  const cmd = async (...a) => {
    const cmds = password ? [['AUTH', password], a] : [a];
    const replies = await exchange(port, cmds);
    const r = replies[replies.length - 1];
    if (password && replies[0] instanceof RedisError) throw replies[0];
    if (r instanceof RedisError) throw r;
    return r;
  };

  const launch = async () => {
    const p = spawn(REDIS_SERVER, args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    paused = false;
    live.add(p);
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    // the watchdog: SIGKILLs the server once this test process is gone (it is killed itself
    // when the server exits while we are alive)
    const w = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 ${p.pid} 2>/dev/null`],
      { stdio: 'ignore', detached: true });
    w.unref();
    watchdog = w;
    live.add(w);
    w.on('exit', () => live.delete(w));
    p.on('exit', () => {
      live.delete(p);
      try { w.kill('SIGKILL'); } catch { /* gone */ }
    });
    p.on('error', (e) => { out += `spawn error: ${e.message}\n`; });
    for (let i = 0; i < 200; i++) {
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`redis-server exited early (${p.exitCode ?? p.signalCode}):\n${out}`);
      try {
        if ((await cmd('PING')) === 'PONG') return;
      } catch { /* not yet */ }
      await sleep(25);
    }
    throw new Error(`redis-server did not answer PING on ${port}:\n${out}`);
  };

  const exited = (p) => new Promise((r) => { if (p.exitCode !== null || p.signalCode !== null) r(); else p.once('exit', () => r()); });
  const running = () => proc && proc.exitCode === null && proc.signalCode === null;

  const r = {
    port, dir, password,
    get pid() { return proc?.pid; },
    cmd,
    running,
    paused: () => paused,
    log: () => out,
    // SIGTERM (a paused server is continued first, or it would never see it)
    stop: async () => {
      if (!running()) return;
      const p = proc;
      if (paused) { p.kill('SIGCONT'); paused = false; }
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited(p);
      clearTimeout(t);
    },
    // SIGKILL: the sockets close at once, nothing is saved
    kill: async () => {
      if (!running()) return;
      const p = proc;
      p.kill('SIGKILL');
      paused = false;
      await exited(p);
    },
    // a new server on the same port and directory (stops the running one first)
    restart: async () => {
      await r.stop();
      await launch();
    },
    // SIGSTOP: the port still accepts connections (the kernel's backlog), nothing is answered
    pause: () => { if (running() && !paused) { proc.kill('SIGSTOP'); paused = true; } },
    resume: () => { if (running() && paused) { proc.kill('SIGCONT'); paused = false; } },
    // Subscribes to CHANNEL on its own connection: {messages (strings, in order), waitFor(pred,
    // timeout) -> the first message PRED accepts, close()}.
    subscribe: async (channel) => {
      const s = net.connect(port, '127.0.0.1');
      let buf = Buffer.alloc(0), off = 0, waiters = [];
      const sub = { messages: [], acked: false };
      await new Promise((res, rej) => { s.once('connect', res); s.once('error', rej); });
      s.on('error', () => {});
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const m = parseReply(buf, off);
          if (!m) break;
          off = m.end;
          if (Array.isArray(m.value) && m.value[0] === 'message') sub.messages.push(m.value[2]);
          if (Array.isArray(m.value) && m.value[0] === 'subscribe') sub.acked = true;
        }
        const w = waiters; waiters = [];
        w.forEach((f) => f());
      });
      s.write(Buffer.concat([...(password ? [encode(['AUTH', password])] : []), encode(['SUBSCRIBE', channel])]));
      for (let i = 0; i < 200 && !sub.acked; i++) await sleep(10);
      if (!sub.acked) throw new Error(`redis on ${port}: SUBSCRIBE ${channel} not acknowledged`);
      sub.waitFor = async (pred, timeout = 3000) => {
        const t0 = Date.now();
        for (;;) {
          const hit = sub.messages.find(pred);
          if (hit !== undefined) return hit;
          if (Date.now() - t0 > timeout) throw new Error(`no message on ${channel} in ${timeout} ms; got ${JSON.stringify(sub.messages.slice(-10))}`);
          await new Promise((res) => { waiters.push(res); setTimeout(res, 50); });
        }
      };
      sub.close = () => s.destroy();
      return sub;
    },
  };
  await launch();
  return r;
}

// ---- a relay that can be cut ----

// A TCP relay on a free loopback port to 127.0.0.1:TARGET. cut() closes every relayed
// connection and stops listening (connects are refused), restore() listens again on the same
// port; stop() ends it.
export async function startForwarder(target) {
  const port = await freePort();
  const socks = new Set();
  const server = net.createServer((c) => {
    const u = net.connect(target, '127.0.0.1');
    socks.add(c); socks.add(u);
    c.on('error', () => {}); u.on('error', () => {});
    c.pipe(u); u.pipe(c);
    const gone = () => { socks.delete(c); socks.delete(u); c.destroy(); u.destroy(); };
    c.on('close', gone); u.on('close', gone);
  });
  const listen = () => new Promise((res, rej) => { server.once('error', rej); server.listen(port, '127.0.0.1', () => { server.off('error', rej); res(); }); });
  await listen();
  let up = true;
  return {
    port,
    cut: async () => {
      if (!up) return;
      up = false;
      const closed = new Promise((res) => server.close(res));
      for (const s of socks) s.destroy();
      socks.clear();
      await closed;
    },
    restore: async () => { if (!up) { await listen(); up = true; } },
    stop: async () => { for (const s of socks) s.destroy(); if (up) { up = false; await new Promise((res) => server.close(res)); } },
  };
}
