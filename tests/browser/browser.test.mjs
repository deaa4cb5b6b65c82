// A real browser: Debian's chromium driven by playwright-core loads @talkjs/core's browser
// build from a page on loopback, connects, sets a user, opens a conversation and sends a
// message. Straight to the backend everything succeeds; through syncgate with both switches
// off, the user and conversation changes reject and the browser console shows syncgate's
// reason, while reads and messages keep working on the same socket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, startBackend, startSyncgate, freePort } from '../lib/harness.mjs';
import { execFileSync } from 'node:child_process';
import { userToken } from '../lib/rawws.mjs';
import { makePki, tlsSection } from '../lib/tlsca.mjs';

const KEY = 'sk_test_demo';
let be, sg, sgTls, sgNoCors, pki, web, webPort, browser;

before(async () => {
  be = await startBackend({ apps: { demo: KEY } });
  sg = await startSyncgate(be.port, `[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n`);
  // the same policy with syncgate's own answers naming no origin: what browsers got before
  sgNoCors = await startSyncgate(be.port, `cors_origins = off\n[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n`);
  // the same policy behind a TLS listener; chromium trusts exactly this certificate's key
  pki = makePki();
  sgTls = await startSyncgate(be.port, `[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${KEY}\n` + tlsSection(pki.server), { tls: true });
  const spki = execFileSync('sh', ['-c', `openssl x509 -in '${pki.server.cert}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]).toString().trim();
  webPort = await freePort();
  web = http.createServer((req, res) => {
    const file = req.url === '/' ? path.join(ROOT, 'tests/browser/page.html')
      : req.url === '/sdk/talkSession.js' ? path.join(ROOT, 'node_modules/@talkjs/core/dist/talkSession.js') : null;
    if (!file) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': file.endsWith('.js') ? 'text/javascript' : 'text/html' });
    res.end(fs.readFileSync(file));
  });
  await new Promise((r) => web.listen(webPort, '127.0.0.1', r));
  // launch() gives every run a fresh temporary profile of its own.
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', `--ignore-certificate-errors-spki-list=${spki}`],
  });
});
after(async () => {
  await browser?.close();
  await new Promise((r) => web.close(r));
  await sg.stop();
  await sgNoCors?.stop();
  await sgTls?.stop();
  await be.stop();
  if (pki) fs.rmSync(pki.dir, { recursive: true, force: true });
});

async function runPage(port, userId, { tls = false } = {}) {
  const conversationId = `conv_${userId}`;
  await be.seed({ appId: 'demo', users: { [userId]: { name: 'Alice' }, bob: { name: 'Bob' } }, conversations: { [conversationId]: { subject: 'Seeded', participants: { [userId]: {}, bob: {} } } } });
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push({ type: m.type(), text: m.text() }));
  await page.goto(`http://127.0.0.1:${webPort}/`);
  await page.waitForFunction(() => window.harnessReady === true);
  const where = tls
    ? { apiUrls: { realtimeWsApiUrl: `wss://localhost:${port}/public_api/v1`, internalHttpApiUrl: `https://localhost:${port}/api/v0`, restApiHttpUrl: `https://localhost:${port}/public_api/v1` } }
    : { host: `127.0.0.1:${port}` };
  const result = await page.evaluate((cfg) => window.runChat(cfg), { ...where, appId: 'demo', userId, token: userToken('demo', userId, KEY), peer: 'bob', conversationId });
  await page.close();
  return { result, consoleLines };
}

test('straight to the backend: the browser sets a user, opens a conversation and sends a message', async () => {
  const { result } = await runPage(be.port, 'alice_direct');
  for (const [k, v] of Object.entries(result)) assert.ok(v.ok, `${k}: ${v.message}`);
  assert.equal(result.getPeer.value, 'Bob');
  assert.equal(result.openConversation.value, 'Seeded');
  assert.equal(result.readBack.value, 'hello from chromium');
});

test('through syncgate with sync off: the console shows syncgate\'s reason; reads and messages keep working', async () => {
  await be.clearLog();
  const { result, consoleLines } = await runPage(sg.port, 'alice_gated');
  assert.equal(result.setUser.ok, false);
  assert.match(result.setUser.message, /403 USER_SYNC_DISABLED/);
  assert.equal(result.setConversation.ok, false);
  assert.match(result.setConversation.message, /UNAUTHORIZED_TO_EDIT/);
  const errors = consoleLines.filter((l) => l.type === 'error').map((l) => l.text);
  assert.ok(errors.some((t) => t.includes('USER_SYNC_DISABLED') && t.includes('syncgate: updating a user refused: user sync from the browser is disabled for app demo')), errors.join('\n'));
  assert.equal(result.getPeer.value, 'Bob');
  assert.equal(result.openConversation.value, 'Seeded');
  assert.ok(result.send.ok, result.send.message);
  assert.equal(result.readBack.value, 'hello from chromium');
  const log = await be.log();
  const frames = log.filter((e) => e.kind === 'ws' && e.user === 'alice_gated');
  const sockets = new Set(frames.map((e) => e.socket));
  assert.equal(sockets.size, 1, 'one realtime socket carried everything');
  assert.ok(!frames.some((e) => /"PUT","\/users\//.test(Buffer.from(e.raw, 'base64').toString())), 'the refused call never reached the backend');
  assert.ok(frames.some((e) => /"POST","\/conversations\/[^"]+\/messages"/.test(Buffer.from(e.raw, 'base64').toString())), 'the message did');
});

test('over wss/https to a TLS listener: the same refusals with syncgate\'s reason, the same working reads and messages', async () => {
  await be.clearLog();
  const { result, consoleLines } = await runPage(sgTls.port, 'alice_tls', { tls: true });
  assert.equal(result.setUser.ok, false);
  assert.match(result.setUser.message, /403 USER_SYNC_DISABLED/);
  assert.equal(result.setConversation.ok, false);
  assert.match(result.setConversation.message, /UNAUTHORIZED_TO_EDIT/);
  assert.ok(consoleLines.some((l) => l.type === 'error' && l.text.includes('syncgate: updating a user refused')));
  assert.equal(result.getPeer.value, 'Bob');
  assert.equal(result.openConversation.value, 'Seeded');
  assert.ok(result.send.ok, result.send.message);
  assert.equal(result.readBack.value, 'hello from chromium');
  const log = await be.log();
  const hdrs = log.filter((e) => e.kind === 'http' && /\/realtime\/alice_tls/.test(e.url)).map((e) => e.rawHeaders.join('\n'));
  assert.ok(hdrs.length && hdrs.every((h) => /X-Forwarded-Proto\nhttps/i.test(h)), 'the backend saw the socket as https');
});

// A page on another origin (the test's web server) calls syncgate's REST-shaped path with a
// user token. The preflight is the backend's (it allows the page's origin); the refusal is
// syncgate's own, and names the page's origin so that the page can read its reason.
async function restFromPage(port, uid) {
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push({ type: m.type(), text: m.text() }));
  await page.goto(`http://127.0.0.1:${webPort}/`);
  await page.waitForFunction(() => window.harnessReady === true);
  const result = await page.evaluate((a) => window.restCall(a), { url: `http://127.0.0.1:${port}/v1/demo/users/${uid}`, method: 'PUT', token: userToken('demo', uid, KEY), body: '{"name":"From a page"}' });
  await page.close();
  return { result, errors: consoleLines.filter((l) => l.type === 'error').map((l) => l.text) };
}

test('a REST call refused by syncgate is readable by a page on another origin: the console shows the reason', async () => {
  await be.clearLog();
  const { result, errors } = await restFromPage(sg.port, 'alice_rest');
  assert.deepEqual(result, { status: 403, errorCode: 'USER_SYNC_DISABLED' });
  assert.ok(errors.some((t) => t.includes('rest: 403 USER_SYNC_DISABLED: syncgate: updating a user refused: user sync from the browser is disabled for app demo')), errors.join('\n'));
  const puts = (await be.log()).filter((e) => e.kind === 'http' && e.method === 'PUT');
  assert.equal(puts.length, 0, 'the refused call never reached the backend');
});

test('with cors_origins = off the same refusal is a CORS failure in the page (the control)', async () => {
  const { result, errors } = await restFromPage(sgNoCors.port, 'alice_nocors');
  assert.ok(result.error, JSON.stringify(result));
  assert.ok(!errors.some((t) => t.includes('USER_SYNC_DISABLED')), errors.join('\n'));
});
