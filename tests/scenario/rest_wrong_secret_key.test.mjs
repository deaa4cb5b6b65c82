// A server-side REST change sent with a secret key that is not the app's (another app's, a
// rotated one) is a browser credential as far as the switches go, so with the switch off it is
// refused; the answer says the key is the problem (401 INVALID_SECRET_KEY), not the switch.
// With the app's own key the call passes byte for byte.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, rawExchange, parseResponses } from '../lib/harness.mjs';

const KEY = 'sk_test_demo';
let be, sg;
before(async () => {
  be = await startBackend({ apps: { demo: KEY } });
  sg = await startSyncgate(be.port, `[app:demo]\nuser_sync = off\nsecret_key = ${KEY}\n`);
});
after(async () => { await sg.stop(); await be.stop(); });

const put = (auth) => rawExchange(sg.port, `PUT /v1/demo/users/carol HTTP/1.1\r\nHost: sg\r\nAuthorization: Bearer ${auth}\r\n` +
  'Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{"name":"Carol"}', { idle: 400 });

test('a wrong sk_ key: 401 INVALID_SECRET_KEY naming the app, nothing forwarded', async () => {
  await be.clearLog();
  for (const wrong of ['sk_test_other', 'sk_live_0123456789abcdef']) {
    const r = parseResponses((await put(wrong)).data)[0];
    assert.equal(r.status, 401);
    const j = JSON.parse(r.body.toString());
    assert.equal(j.errorCode, 'INVALID_SECRET_KEY');
    assert.match(j.reasons[0], /not app demo's/);
    assert.doesNotMatch(j.reasons[0], /sync from the browser is disabled/);
  }
  assert.equal((await be.log()).filter((e) => e.kind === 'http' && e.method === 'PUT').length, 0);
  assert.ok(sg.logs().some((l) => l.event === 'refuse' && l.rule === 'foreign-secret-key' && l.status === 401));
});

test('the app\'s own key passes, and a user token still gets the switch\'s answer', async () => {
  const ok = parseResponses((await put(KEY)).data)[0];
  assert.equal(ok.status, 200);
  const r = parseResponses((await put('not-a-key')).data)[0];
  assert.equal(r.status, 403);
  assert.equal(JSON.parse(r.body.toString()).errorCode, 'USER_SYNC_DISABLED');
});
