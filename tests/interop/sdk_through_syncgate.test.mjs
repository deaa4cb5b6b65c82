// The SDK scenario suite through syncgate with both switches on: everything behaves as it
// does straight against the backend (token and signature auth).
import { before, after } from 'node:test';
import { startBackend, startSyncgate } from '../lib/harness.mjs';
import { defineScenarios } from './sdk_scenarios.mjs';

let be, sg;
before(async () => {
  be = await startBackend({ apps: { demo: 'sk_test_demo' } });
  sg = await startSyncgate(be.port, '[app:demo]\nuser_sync = on\nconversation_sync = on\nsecret_key = sk_test_demo\n');
});
after(async () => { await sg.stop(); await be.stop(); setTimeout(() => process.exit(), 200).unref(); });
const ctx = () => ({ host: `127.0.0.1:${sg.port}`, appId: 'demo', key: 'sk_test_demo' });
defineScenarios('through syncgate', ctx, 'token');
defineScenarios('through syncgate', ctx, 'signature');
