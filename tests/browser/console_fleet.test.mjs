// The admin console of an instance in a fleet (issues #19 and #21), in Chromium: a switch
// flipped from the page says it was shared with the fleet (and Redis holds it); the Fleet
// section shows the instance connected; with Redis gone, a flip says it applies to this
// instance only and why, and the Fleet section shows it disconnected and since when; with
// Redis back, the section says connected again and Redis holds the newer flip.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startBackend, startSyncgate, freePort, waitFor } from '../lib/harness.mjs';
import { startRedis, haveRedis } from '../lib/redis.mjs';

const skip = haveRedis() ? false : 'redis-server is not installed (scripts/deps.sh test)';
const P = 'console:';
let be, sg, redis, browser, page, admin;

before(async () => {
  if (skip) return;
  redis = await startRedis();
  const adminPort = await freePort();
  admin = `http://127.0.0.1:${adminPort}`;
  be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  sg = await startSyncgate(be.port, `[admin]\nlisten = 127.0.0.1:${adminPort}\n` +
    '[app:demo]\nuser_sync = on\nconversation_sync = on\nsecret_key = sk_test_demo\n' +
    `[fleet]\nredis = 127.0.0.1:${redis.port}\nkey_prefix = ${P}\ninstance = console-a\npoll = 200ms\ntimeout = 500ms\n` +
    '[limits]\nshutdown_grace = 1s\n');
  await waitFor(async () => (await (await fetch(`${admin}/stats`)).json()).fleet?.connected === true, { timeout: 8000 });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${admin}/`);
  await page.waitForSelector('#apps tbody tr[data-app="demo"]', { timeout: 8000 });
});
after(async () => {
  await browser?.close();
  await sg?.stop();
  await be?.stop();
  await redis?.stop();
});

const fleetShown = () => page.evaluate(() => {
  const dl = document.querySelector('#fleet'), o = {};
  const dts = dl ? [...dl.querySelectorAll('dt')] : [];
  for (const dt of dts) o[dt.textContent] = dt.nextElementSibling?.textContent;
  return { hidden: document.querySelector('#fleet-section').hidden, ...o };
});
const status = () => page.textContent('#status');
async function flip(key) {
  const b = `#apps tr[data-app="demo"] [data-switch="${key}"]`;
  const before = await page.getAttribute(b, 'data-value');
  await page.click(b);
  await page.waitForFunction(([sel, v]) => document.querySelector(sel)?.getAttribute('data-value') !== v &&
    document.querySelector(sel)?.getAttribute('aria-busy') !== 'true', [b, before], { timeout: 5000 });
  return page.getAttribute(b, 'data-value');
}

test('a flip from the console is shared with the fleet, and the Fleet section shows the instance connected', { skip }, async () => {
  await waitFor(async () => (await fleetShown()).connected === 'true', { timeout: 5000 });
  const f = await fleetShown();
  assert.equal(f.hidden, false);
  assert.equal(f.instance, 'console-a');
  const now = await flip('user_sync');
  assert.equal(now, 'off');
  assert.match(await status(), /user sync is now off\. Shared with the fleet\./);
  assert.equal(await redis.cmd('HGET', `${P}app:demo`, 'user_sync'), 'off');
});

test('Redis gone: a flip applies here only and the page says why; the Fleet section says disconnected since when; Redis back: connected, the newer flip shared', { skip }, async () => {
  await redis.kill();
  await waitFor(async () => (await fleetShown()).connected === 'false', { timeout: 8000 });
  const f = await fleetShown();
  assert.match(f.stale_since, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const now = await flip('conversation_sync');
  assert.equal(now, 'off');
  assert.match(await status(), /conversation sync is now off\. Not shared: redis unreachable \(.+\) \(this instance only; shared at the resync/);
  assert.equal((await (await fetch(`${admin}/apps/demo`)).json()).conversation_sync, 'off', 'applied here');
  await redis.restart();
  await waitFor(async () => (await fleetShown()).connected === 'true', { timeout: 12000 });
  assert.equal((await fleetShown()).stale_since, '', 'stale_since null once connected');
  await waitFor(async () => (await redis.cmd('HGET', `${P}app:demo`, 'conversation_sync')) === 'off', { timeout: 5000 });
});
