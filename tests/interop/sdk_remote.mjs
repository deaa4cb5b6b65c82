// The real SDK in a child process of its own: @talkjs/core keeps one session per (appId,
// userId) for the whole process, so the same user connected to several syncgates at once (as
// from several browsers) needs one process per connection. remoteSession(opts) forks this file
// with sdk.mjs's session(opts) and runs calls in it:
//   const r = await remoteSession({host, appId, userId, key});
//   await r.run(['currentUser'], ['set', [{name: 'x'}]])  // -> {ok} or {ok: false, message}
// Each step is [property] or [method, [args]], applied in order from the session. The child
// exits when the parent goes away; close() ends it earlier.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

export async function remoteSession(opts) {
  const child = fork(fileURLToPath(import.meta.url), ['--sdk-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const pending = new Map();
  let next = 0;
  child.on('message', (m) => { const p = pending.get(m.id); if (p) { pending.delete(m.id); p(m); } });
  child.on('exit', (code, sig) => { for (const p of pending.values()) p({ ok: false, message: `sdk child exited (${code ?? sig})` }); pending.clear(); });
  const send = (msg, timeout = 15000) => new Promise((resolve) => {
    const id = ++next;
    const t = setTimeout(() => { pending.delete(id); resolve({ ok: false, message: `no answer from the sdk child in ${timeout} ms`, timedOut: true }); }, timeout);
    pending.set(id, (m) => { clearTimeout(t); resolve(m); });
    child.send({ id, ...msg });
  });
  const opened = await send({ op: 'open', opts });
  if (!opened.ok) throw new Error(`sdk child: ${opened.message}`);
  return {
    pid: child.pid,
    run: (...steps) => send({ op: 'run', steps }),
    setUser: (fields) => send({ op: 'run', steps: [['currentUser'], ['set', [fields]]] }),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

if (process.argv[2] === '--sdk-child' && process.send) {
  const { session, settle } = await import('./sdk.mjs');
  let s = null;
  process.on('disconnect', () => process.exit(0));
  process.on('message', async ({ id, op, opts, steps }) => {
    let r;
    if (op === 'open') {
      r = await settle(() => { s = session(opts); return true; });
    } else {
      r = await settle(async () => {
        let obj = s;
        for (const [name, args] of steps) obj = args ? await obj[name](...args) : obj[name];
        return obj;
      });
      delete r.value; // SDK objects need not be serializable
    }
    process.send({ id, ...r });
  });
}
