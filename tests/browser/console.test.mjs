// The admin console (issue #21) in a real browser: Debian's chromium driven by playwright-core
// loads GET / from syncgate's admin listener (a token_file configured). Without the token the
// page says so; with it, it lists app demo and its switches; conversation_sync flipped off from
// the keyboard is off for GET /apps/demo and for the SDK's next setParticipant, whose refusal
// shows in the page's list within 2 s; a hostile user id renders as text; the counts table,
// the chart and the CSP are checked, and a screenshot is written for the test output.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startBackend, startSyncgate, freePort, waitFor, sleep } from '../lib/harness.mjs';
import { RawWs, userToken } from '../lib/rawws.mjs';
import { session, uniqueUser } from '../interop/sdk.mjs';

const KEY = 'sk_test_demo';
const TOKEN = crypto.randomBytes(24).toString('hex');
const EVIL = '<img src=x onerror=alert(1)>';
let be, sg, adminPort, admin, tokenDir, browser, page;
const dialogs = [], cspErrors = [], requests = [];

// GET/PUT on the admin listener from node; TOKEN: the bearer (null: none).
async function adm(method, p, { token = TOKEN, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`${admin}${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

// Opens the console in a new tab (sessionStorage is per tab: it starts without a token).
async function openConsole() {
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  p.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  p.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspErrors.push(m.text()); });
  p.on('pageerror', (e) => cspErrors.push(`pageerror: ${e.message}`));
  p.on('request', (r) => requests.push({ method: r.method(), url: r.url() }));
  await p.goto(`${admin}/`);
  return p;
}
const rowsOf = (p) => p.evaluate(() => [...document.querySelectorAll('#refusals tbody tr')].map((tr) => {
  const o = {};
  for (const td of tr.querySelectorAll('td[data-field]')) o[td.dataset.field] = td.textContent;
  o.userHtml = tr.querySelector('td[data-field=user]')?.innerHTML;
  return o;
}));

before(async () => {
  tokenDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-console-'));
  const tokenFile = path.join(tokenDir, 'admin-token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  adminPort = await freePort();
  admin = `http://127.0.0.1:${adminPort}`;
  be = await startBackend({ apps: { demo: KEY } });
  sg = await startSyncgate(be.port, `[admin]\nlisten = 127.0.0.1:${adminPort}\ntoken_file = ${tokenFile}\n`
    + `[app:demo]\nuser_sync = on\nconversation_sync = on\nsecret_key = ${KEY}\n[limits]\nshutdown_grace = 1s\n`);
  await waitFor(async () => { try { return (await adm('GET', '/healthz', { token: null })).status === 200; } catch { return false; } });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});
after(async () => {
  await browser?.close();
  await sg?.stop();
  await be?.stop();
  if (tokenDir) fs.rmSync(tokenDir, { recursive: true, force: true });
  setTimeout(() => process.exit(), 200).unref(); // the SDK keeps its sockets
});

test('GET / and its two files: strict CSP, no inline script or style; the console\'s JSON needs the token', async () => {
  const want = { '/': 'text/html', '/console.js': 'text/javascript', '/console.css': 'text/css' };
  for (const [p, type] of Object.entries(want)) {
    const r = await adm('GET', p, { token: null });
    assert.equal(r.status, 200, p);
    assert.ok(r.headers.get('content-type').startsWith(type), `${p}: ${r.headers.get('content-type')}`);
    const csp = r.headers.get('content-security-policy') || '';
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(d), `${p}: CSP ${csp} lacks ${d}`);
    assert.ok(!/unsafe-inline|unsafe-eval|\*/.test(csp), `${p}: CSP ${csp}`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', p);
    assert.equal(r.headers.get('cache-control'), 'no-store', p);
  }
  const html = (await adm('GET', '/', { token: null })).text;
  const scripts = html.match(/<script\b[^>]*>/gi) || [];
  assert.ok(scripts.length >= 1 && scripts.every((s) => /\bsrc="\/console\.js"/.test(s)), scripts.join(' '));
  assert.ok(/<script\b[^>]*src="\/console\.js"[^>]*>\s*<\/script>/i.test(html), 'the script element is empty');
  assert.ok(/<link\b[^>]*rel="stylesheet"[^>]*href="\/console\.css"/i.test(html));
  assert.ok(!/<style\b|\sstyle=|\son[a-z]+=|javascript:|https?:\/\//i.test(html), 'no inline style, handler, or external URL');
  const js = (await adm('GET', '/console.js', { token: null })).text;
  assert.ok(!/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/.test(js), 'the script never parses markup');
  assert.ok(!/https?:\/\/(?!www\.w3\.org\/2000\/svg)/.test(js), 'the script fetches nothing from elsewhere');
  for (const p of ['/apps', '/stats', '/decisions?limit=5']) {
    for (const token of [null, 'not-the-token']) {
      const r = await adm('GET', p, { token });
      assert.equal(r.status, 401, `${p} with ${token}`);
      assert.match(r.json?.error ?? '', /Bearer/);
    }
    const ok = await adm('GET', p);
    assert.equal(ok.status, 200, `${p}: ${ok.text}`);
  }
  assert.equal((await adm('PUT', '/apps/demo', { token: null, body: { conversation_sync: 'off' } })).status, 401);
  assert.equal((await adm('GET', '/apps/demo')).json.conversation_sync, 'on', 'an unauthorised PUT changed nothing');
});

test('without a token the page shows the token error, not a blank page', async () => {
  page = await openConsole();
  await page.waitForSelector('#error:not([hidden])', { timeout: 5000 });
  const err = await page.textContent('#error');
  assert.match(err, /admin token/i);
  assert.match(err, /enter it/i);
  assert.ok(await page.isVisible('#apps-h'), 'the page is there');
  assert.ok(await page.isVisible('#token'));
  assert.equal(await page.locator('#apps tbody tr[data-app]').count(), 0);
  assert.equal(await page.evaluate(() => document.querySelectorAll('script:not([src])').length), 0, 'no inline script in the DOM');
  // a wrong token: refused, said so, the page stays usable
  await page.fill('#token', 'wrong-token');
  await page.press('#token', 'Enter');
  await waitFor(async () => /refused/i.test(await page.textContent('#error')) && await page.isVisible('#error'));
  assert.equal(await page.locator('#apps tbody tr[data-app]').count(), 0);
});

test('with the token: app demo and its switches; the token is kept in sessionStorage only', async () => {
  await page.fill('#token', TOKEN);
  await page.click('#use-token');
  await page.waitForSelector('#apps tbody tr[data-app="demo"]', { timeout: 5000 });
  await page.waitForSelector('#error[hidden]', { state: 'attached', timeout: 3000 });
  const sw = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#apps tr[data-app="demo"] [data-switch]')]
    .map((b) => [b.dataset.switch, { role: b.getAttribute('role'), checked: b.getAttribute('aria-checked'), value: b.dataset.value, tag: b.tagName }])));
  assert.deepEqual(sw.user_sync, { role: 'switch', checked: 'true', value: 'on', tag: 'BUTTON' });
  assert.deepEqual(sw.conversation_sync, { role: 'switch', checked: 'true', value: 'on', tag: 'BUTTON' });
  assert.equal(sw.mode.value, 'enforce');
  const store = await page.evaluate(() => ({ session: Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)), local: localStorage.length, cookie: document.cookie }));
  assert.deepEqual(store, { session: [TOKEN], local: 0, cookie: '' });
  assert.equal(await page.inputValue('#token'), '', 'the field is cleared once the token is kept');
});

test('conversation_sync flipped off from the keyboard: GET /apps says off, the SDK\'s next setParticipant rejects, the refusal is listed within 2 s', async (t) => {
  const me = uniqueUser('console'), bob = uniqueUser('bob'), conv = uniqueUser('cv');
  await be.seed({ appId: 'demo', users: { [me]: { name: 'Me' }, [bob]: { name: 'Bob' } }, conversations: { [conv]: { subject: 'Seeded', participants: { [me]: {}, [bob]: {} } } } });
  const s = session({ host: `127.0.0.1:${sg.port}`, appId: 'demo', userId: me, key: KEY });
  const cx = s.conversation(conv);
  await cx.participant(bob).set({ access: 'ReadWrite' }); // switches on: allowed

  // keyboard only: focus the user sync switch, Tab to the conversation sync one, Space
  await page.focus('#apps tr[data-app="demo"] [data-switch="user_sync"]');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.switch), 'conversation_sync', 'Tab reaches the next switch');
  await page.keyboard.press('Space');
  await page.waitForSelector('#apps tr[data-app="demo"] [data-switch="conversation_sync"][aria-checked="false"]', { timeout: 3000 });
  const a = await adm('GET', '/apps/demo');
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.conversation_sync, 'off');
  assert.equal(a.json.user_sync, 'on', 'only the switch flipped');
  assert.equal(a.json.source?.conversation_sync, 'admin');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.switch), 'conversation_sync', 'the focus stays on the switch');

  let err = null;
  try { await cx.participant(bob).set({ access: 'Read' }); } catch (e) { err = e; }
  const t0 = Date.now();
  assert.ok(err, 'setParticipant resolved with conversation sync off');
  assert.ok(err.errorCode === 'UNAUTHORIZED_TO_EDIT_PARTICIPANT' || String(err.message).includes('UNAUTHORIZED_TO_EDIT_PARTICIPANT'), String(err.message));
  const row = await waitFor(async () => (await rowsOf(page)).find((r) => r.user === me), { timeout: 2000, every: 20 });
  const ms = Date.now() - t0;
  t.diagnostic(`the refusal was listed ${ms} ms after the SDK's promise rejected`);
  assert.ok(ms <= 2000, `${ms} ms`);
  assert.equal(row.app, 'demo');
  assert.equal(row.transport, 'ws');
  assert.match(row.op, /^participant-/);
  assert.match(row.answer, /UNAUTHORIZED_TO_EDIT_PARTICIPANT/);
  assert.match(row.reason, /syncgate/);
});

test('a hostile user id is listed as text: no element made of it, no dialog', async () => {
  const ws = await RawWs.open(sg.port, `/public_api/v1/demo/realtime/${encodeURIComponent(EVIL)}?talkjs-core=1.12.0`);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', EVIL, KEY) }, {}]));
  const renew = await ws.json(0);
  assert.equal(renew?.[1], 200, JSON.stringify(renew));
  const conv = encodeURIComponent('<svg onload=alert(2)>');
  ws.sendText(`[1,"DELETE","/conversations/${conv}/participants/bob",{},{}]`);
  const r = await ws.json(1);
  assert.deepEqual([r?.[1], r?.[2]?.errorCode], [403, 'UNAUTHORIZED_TO_EDIT_PARTICIPANT'], JSON.stringify(r));
  const t0 = Date.now();
  const row = await waitFor(async () => (await rowsOf(page)).find((x) => x.user === EVIL), { timeout: 2000, every: 20 });
  assert.ok(Date.now() - t0 <= 2000);
  assert.equal(row.app, 'demo');
  assert.ok(row.userHtml.includes('&lt;img'), row.userHtml);
  await sleep(1200); // an onerror would have fired by now (and another refresh has gone by)
  assert.deepEqual(dialogs, []);
  assert.equal(await page.evaluate(() => document.querySelectorAll('img, #refusals svg, #refusals script').length), 0, 'an element was made of wire data');
  ws.destroy();
});

test('decision counts, the refusals chart, no CSP violation, nothing changed by a GET; a screenshot', async (t) => {
  const refuse = await waitFor(async () => {
    const n = await page.evaluate(() => [...document.querySelectorAll('#counts tbody tr[data-app="demo"] td[data-verdict="refuse"]')].reduce((a, td) => a + Number(td.textContent), 0));
    return n > 0 ? n : null;
  }, { timeout: 2000 });
  assert.ok(refuse >= 2, `demo's refusals: ${refuse}`);
  const allow = await page.evaluate(() => [...document.querySelectorAll('#counts tbody tr[data-app="demo"] td[data-verdict="allow"]')].reduce((a, td) => a + Number(td.textContent), 0));
  assert.ok(allow > 0, 'the allowed calls are counted too');
  // the chart draws /stats' refusals per minute: one bar per minute with refusals, at its
  // minute, its height in proportion (the busiest minute the tallest), the caption's total
  let stats, bars;
  await waitFor(async () => {
    stats = (await adm('GET', '/stats')).json;
    bars = await page.evaluate(() => [...document.querySelectorAll('#chart rect.bar')].map((r) => ({ h: Number(r.getAttribute('height')), n: Number(r.dataset.n), minute: Number(r.dataset.minute), w: r.getBoundingClientRect().width })));
    const want = stats.refusals_per_minute.map((n, i) => ({ n, minute: i - 59 })).filter((b) => b.n > 0);
    return JSON.stringify(bars.map(({ n, minute }) => ({ n, minute }))) === JSON.stringify(want);
  }, { timeout: 5000 }).catch(() => assert.fail(`bars ${JSON.stringify(bars)} against /stats ${JSON.stringify(stats.refusals_per_minute)}`));
  assert.ok(bars.length >= 1 && bars.every((b) => b.w > 0), JSON.stringify(bars));
  const max = Math.max(...bars.map((b) => b.n));
  for (const b of bars)
    assert.ok(Math.abs(b.h - Math.max(2, 92 * b.n / max)) < 0.11, `bar of ${b.n}: height ${b.h}, busiest ${max}`);
  const total = stats.refusals_per_minute.reduce((x, y) => x + y, 0);
  assert.match(await page.textContent('#chart-cap'), new RegExp(`: ${total} in all, at most ${max} in one minute`));
  assert.equal(stats.refusals_per_minute.length, 60);
  assert.ok(stats.refusals_per_minute.reduce((x, y) => x + y, 0) >= 2);
  assert.equal(await page.isVisible('#fleet-section'), stats.fleet !== null, 'fleet shown exactly when the field is non-null');
  assert.deepEqual(cspErrors, [], 'the page violates its own CSP');
  // the console only reads with GET; its one change was the PUT of the keyboard flip
  const own = requests.filter((r) => r.url.startsWith(admin));
  const puts = own.filter((r) => r.method !== 'GET');
  assert.deepEqual(puts.map((r) => `${r.method} ${new URL(r.url).pathname}`), ['PUT /apps/demo']);
  assert.ok(own.some((r) => r.url.endsWith('/stats')) && own.some((r) => r.url.endsWith('/decisions?limit=200')));
  assert.ok(own.every((r) => r.url.startsWith(admin)) && requests.every((r) => r.url.startsWith(admin) || r.url.startsWith('data:')), 'no request left the admin listener');
  const shot = path.join(process.env.SG_SCREENSHOT_DIR || os.tmpdir(), `syncgate-console-${process.pid}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 10000);
  t.diagnostic(`screenshot: ${shot}`);
  console.log(`console screenshot: ${shot}`);
});

test('syncgate gone: the page says its admin listener is unreachable', async () => {
  await sg.stop();
  await waitFor(async () => /unreachable/i.test(await page.textContent('#error')) && await page.isVisible('#error'), { timeout: 8000 });
  assert.ok(await page.isVisible('#apps tr[data-app="demo"]'), 'the last known state stays on the page');
  await page.close();
});
