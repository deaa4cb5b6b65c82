// The SDK scenario suite straight against the reference backend (the oracle), with token
// (JWT) auth and with signature (boken) auth.
import { before, after } from 'node:test';
import { startBackend } from '../lib/harness.mjs';
import { defineScenarios } from './sdk_scenarios.mjs';

let be;
before(async () => { be = await startBackend({ apps: { demo: 'sk_test_demo' } }); });
after(async () => { await be.stop(); setTimeout(() => process.exit(), 200).unref(); });
const ctx = () => ({ host: `127.0.0.1:${be.port}`, appId: 'demo', key: 'sk_test_demo' });
defineScenarios('direct', ctx, 'token');
defineScenarios('direct', ctx, 'signature');
