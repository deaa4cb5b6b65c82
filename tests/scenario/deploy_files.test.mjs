// What an operator installs: `make install` puts the binary, the man page, the docs, the
// systemd unit and the default config where they belong (DESTDIR, PREFIX); the installed
// binary checks the installed config; the man page renders and names every option; the unit
// passes `systemd-analyze verify` and scores 2.0 or better in `systemd-analyze security`
// (where systemd-analyze exists); the Kubernetes example mounts its config so that updates
// arrive, runs without privileges and probes without the admin token; its fleet's Redis is the
// one [fleet] names, with the password syncgate is given, and unprivileged too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT, SYNCGATE } from '../lib/harness.mjs';

const sh = (cmd, args, opts = {}) => spawnSync(cmd, args, { encoding: 'utf8', ...opts });
const has = (cmd) => sh('sh', ['-c', `command -v ${cmd}`]).status === 0;
const dest = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-install-'));
process.on('exit', () => fs.rmSync(dest, { recursive: true, force: true }));

test('make install places every file, and the installed binary checks the installed config', () => {
  const r = sh('make', ['-s', '-C', ROOT, 'install', `DESTDIR=${dest}`, 'PREFIX=/opt/sg', `BUILD=${path.dirname(SYNCGATE)}`]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  for (const f of ['opt/sg/bin/syncgate', 'opt/sg/share/man/man8/syncgate.8', 'opt/sg/share/doc/syncgate/configuration.md',
    'opt/sg/share/doc/syncgate/protocol.md', 'etc/systemd/system/syncgate.service', 'etc/syncgate/syncgate.conf'])
    assert.ok(fs.existsSync(path.join(dest, f)), f);
  assert.ok(fs.statSync(path.join(dest, 'opt/sg/bin/syncgate')).mode & 0o111, 'executable');
  const unit = fs.readFileSync(path.join(dest, 'etc/systemd/system/syncgate.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/opt\/sg\/bin\/syncgate -c \/etc\/syncgate\/syncgate.conf$/m, 'the unit follows PREFIX');
  const t = sh(path.join(dest, 'opt/sg/bin/syncgate'), ['-t', '-c', path.join(dest, 'etc/syncgate/syncgate.conf')]);
  assert.equal(t.status, 0, t.stderr);
  // an existing config is never overwritten
  fs.writeFileSync(path.join(dest, 'etc/syncgate/syncgate.conf'), '# mine\n');
  assert.equal(sh('make', ['-s', '-C', ROOT, 'install', `DESTDIR=${dest}`, 'PREFIX=/opt/sg', `BUILD=${path.dirname(SYNCGATE)}`]).status, 0);
  assert.equal(fs.readFileSync(path.join(dest, 'etc/syncgate/syncgate.conf'), 'utf8'), '# mine\n');
});

test('the man page renders and names every option --help lists', { skip: !has('groff') && 'no groff' }, () => {
  const r = sh('groff', ['-man', '-Tutf8', '-ww', path.join(ROOT, 'docs/syncgate.8')]);
  assert.equal(r.status, 0);
  assert.equal(r.stderr, '', 'no groff warnings');
  const text = r.stdout.replace(/.\x08/g, '');
  const help = sh(SYNCGATE, ['--help']).stdout;
  for (const opt of ['-c', '-t', '-v', 'token', '--app', '--user', '--ttl', '--version'])
    assert.ok(help.includes(opt) && text.includes(opt), opt);
  assert.match(text, /SIGHUP/);
  assert.match(text, /SIGTERM/);
});

test('the systemd unit verifies and is sandboxed (exposure 2.0 or better)', { skip: !has('systemd-analyze') && 'no systemd-analyze' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-unit-'));
  const man = path.join(dir, 'man', 'man8');
  fs.mkdirSync(man, { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'docs/syncgate.8'), path.join(man, 'syncgate.8'));
  const unit = path.join(dir, 'syncgate.service');
  fs.writeFileSync(unit, fs.readFileSync(path.join(ROOT, 'deploy/syncgate.service'), 'utf8').replaceAll('/usr/local/bin/syncgate', SYNCGATE));
  const v = sh('systemd-analyze', ['verify', unit], { env: { ...process.env, MANPATH: path.join(dir, 'man') } });
  assert.equal(v.status, 0, v.stderr);
  assert.equal(v.stderr.trim(), '', v.stderr);
  const s = sh('systemd-analyze', ['security', '--offline=yes', unit]);
  const m = (s.stdout + s.stderr).match(/Overall exposure level for syncgate\.service: ([\d.]+)/);
  assert.ok(m, s.stdout + s.stderr);
  assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
  assert.match(fs.readFileSync(unit, 'utf8'), /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m, 'binds 443 without root');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the Kubernetes example: config updates arrive, no privileges, probes without the token, a loopback backend, pinned images', () => {
  const y = fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/sidecar.yaml'), 'utf8');
  const code = y.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
  assert.doesNotMatch(code, /subPath/, 'a subPath mount is never updated');
  assert.match(code, /watch_config = on/);
  assert.match(code, /mountPath: \/etc\/syncgate\/conf, readOnly: true/);
  assert.match(code, /args: \["-c", "\/etc\/syncgate\/conf\/syncgate.conf"\]/);
  for (const k of [/runAsNonRoot: true/, /readOnlyRootFilesystem: true/, /allowPrivilegeEscalation: false/, /capabilities: \{drop: \["ALL"\]\}/])
    assert.match(code, k);
  assert.doesNotMatch(code, /Authorization/, 'probes need no token');
  assert.match(code, /httpGet: \{path: \/readyz, port: admin\}/);
  assert.match(code, /127\.0\.0\.1:8081/);
  for (const img of code.match(/image: \S+/g)) assert.doesNotMatch(img, /:latest$|^image: [^:]+$/, img);
  // its config is one syncgate accepts
  const conf = code.match(/syncgate\.conf: \|\n((?: {4}.*\n)+)/)[1].replace(/^ {4}/gm, '');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-k8s-'));
  fs.mkdirSync(path.join(dir, 'secrets'));
  fs.writeFileSync(path.join(dir, 'secrets/admin-token'), 'change-me\n');
  fs.writeFileSync(path.join(dir, 'secrets/YOUR_APP_ID.key'), 'sk_live_change_me\n');
  fs.writeFileSync(path.join(dir, 'secrets/redis-password'), 'change-me-too\n');
  const file = path.join(dir, 'syncgate.conf');
  fs.writeFileSync(file, conf.replaceAll('/etc/syncgate/secrets', path.join(dir, 'secrets')).replaceAll('/var/lib/syncgate', dir));
  const t = sh(SYNCGATE, ['-t', '-c', file]);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(t.status, 0, t.stderr);
});

test('the Kubernetes example\'s fleet: [fleet] names the Redis Service\'s fixed address, the password both read, a writable state_file', () => {
  const y = fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/sidecar.yaml'), 'utf8');
  const code = y.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
  const docs = code.split(/^---$/m);
  const doc = (kind, name) => {
    const d = docs.find((t) => new RegExp(`^kind: ${kind}$`, 'm').test(t) && new RegExp(`^  name: ${name}$`, 'm').test(t));
    assert.ok(d, `a ${kind} ${name}`);
    return d;
  };
  const conf = code.match(/syncgate\.conf: \|\n((?: {4}.*\n)+)/)[1].replace(/^ {4}/gm, '');
  const fleet = conf.match(/^\[fleet\]\n((?:[^[].*\n?)*)/m);
  assert.ok(fleet, 'the config has a [fleet] section');
  const key = (k) => fleet[1].match(new RegExp(`^${k} = (.+)$`, 'm'))?.[1];
  // redis = the Service's clusterIP and port (an address: syncgate refuses names)
  const [ip, port] = key('redis').split(':');
  assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
  const svc = doc('Service', 'syncgate-redis');
  assert.equal(svc.match(/clusterIP: (\S+)/)?.[1], ip, 'the Service has the fixed address [fleet] redis names');
  assert.match(svc, new RegExp(`\\{name: redis, port: ${port}, targetPort: redis\\}`));
  assert.match(svc, /selector: \{app: syncgate-redis\}/);
  // the password: a file of the mounted Secret for syncgate, the same key for Redis
  const pw = key('password_file');
  assert.match(pw, /^\/etc\/syncgate\/secrets\/[^/]+$/);
  const pwKey = path.basename(pw);
  assert.match(doc('Secret', 'syncgate-secrets'), new RegExp(`^  ${pwKey.replace('.', '\\.')}: \\S`, 'm'), 'the Secret holds it');
  const redis = doc('Deployment', 'syncgate-redis');
  assert.match(redis, new RegExp(`secretKeyRef: \\{name: syncgate-secrets, key: ${pwKey}\\}`));
  assert.match(redis, /"--requirepass", "\$\(REDIS_PASSWORD\)"/);
  assert.match(redis, /selector:\n\s+matchLabels: \{app: syncgate-redis\}/);
  // the state_file's directory is a writable volume (the root filesystem is read-only)
  const state = key('state_file');
  assert.ok(state, 'a state_file: a restarted container starts from the last state it knew');
  const side = doc('Deployment', 'chat-backend');
  const mount = side.match(new RegExp(`\\{name: (\\S+), mountPath: ${path.dirname(state).replaceAll('/', '\\/')}\\}`));
  assert.ok(mount, `a volume mounted (not readOnly) at ${path.dirname(state)}`);
  assert.match(side, new RegExp(`- name: ${mount[1]}\\n\\s+emptyDir:`));
  // Redis unprivileged like syncgate, its image pinned
  for (const k of [/runAsNonRoot: true/, /readOnlyRootFilesystem: true/, /allowPrivilegeEscalation: false/, /capabilities: \{drop: \["ALL"\]\}/])
    assert.match(redis, k);
  assert.match(redis, /image: redis:\d+\.\d+\.\d+/);
  // only the syncgate pods reach it
  assert.match(doc('NetworkPolicy', 'syncgate-redis'), /matchLabels: \{app: chat-backend\}/);
});
