// The SDK scenario suite over TLS: @talkjs/core pointed at syncgate's wss:// and https://
// addresses with its apiUrls option, trusting the test CA through NODE_EXTRA_CA_CERTS (set
// by ctest, as a deployment would set it). Three shapes: TLS only at the client side, only
// at the backend side (syncgate verifies the backend against upstream_ca_file), and both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate } from '../lib/harness.mjs';
import { loadPki, tlsSection } from '../lib/tlsca.mjs';
import { defineScenarios } from './sdk_scenarios.mjs';
import { session, uniqueUser, settle } from './sdk.mjs';

const KEY = 'sk_test_demo', FKEY = 'sk_test_facts';
const APP = `[app:demo]\nuser_sync = on\nconversation_sync = on\nsecret_key = ${KEY}\n` +
  `[app:facts]\nuser_sync = off\nconversation_sync = off\nsecret_key = ${FKEY}\n[limits]\nshutdown_grace = 500ms\n`;
const apps = { demo: KEY, facts: FKEY };
assert.ok(process.env.SG_TEST_PKI && process.env.NODE_EXTRA_CA_CERTS, 'run through ctest (it makes the test PKI and sets NODE_EXTRA_CA_CERTS)');
const pki = loadPki(process.env.SG_TEST_PKI);

const procs = [];
let plainBackend, tlsBackend, clientSide, backendSide, bothSides;
before(async () => {
  plainBackend = await startBackend({ apps });
  tlsBackend = await startBackend({ apps, tls: pki.server });
  procs.push(plainBackend, tlsBackend);
  clientSide = await startSyncgate(plainBackend.port, APP + tlsSection(pki.server), { tls: true });
  backendSide = await startSyncgate(tlsBackend.port, `upstream_ca_file = ${pki.ca}\n` + APP, { upstream: 'https://localhost' });
  bothSides = await startSyncgate(tlsBackend.port, `upstream_ca_file = ${pki.ca}\n` + APP + tlsSection(pki.server), { tls: true, upstream: 'https://localhost' });
  procs.push(clientSide, backendSide, bothSides);
});
after(async () => {
  // The SDK sessions stay open and keep reconnecting once their syncgate is gone; over wss the
  // ws package reports those refused connects as uncaught errors. They are the teardown's.
  process.on('uncaughtException', (e) => { if (!['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(e.code)) throw e; });
  for (const p of procs.reverse()) await p.stop();
  setTimeout(() => process.exit(), 200).unref();
});

const over = (sg, scheme) => () => ({
  appId: 'demo', key: KEY,
  apiUrls: {
    realtimeWsApiUrl: `${scheme === 'https' ? 'wss' : 'ws'}://localhost:${sg.port}/public_api/v1`,
    internalHttpApiUrl: `${scheme}://localhost:${sg.port}/api/v0`,
    restApiHttpUrl: `${scheme}://localhost:${sg.port}/public_api/v1`,
  },
});
defineScenarios('wss/https client -> syncgate -> plain backend', over({ get port() { return clientSide.port; } }, 'https'), 'token');
defineScenarios('plain client -> syncgate -> https/wss backend', over({ get port() { return backendSide.port; } }, 'http'), 'token');
defineScenarios('TLS on both sides', over({ get port() { return bothSides.port; } }, 'https'), 'signature');

test('with the switches off, createIfNotExists is decided on a fact looked up over the https upstream', async () => {
  const me = uniqueUser('me'), known = uniqueUser('known');
  await tlsBackend.seed({ appId: 'facts', users: { [me]: {}, [known]: { name: 'Known' } } });
  await tlsBackend.clearLog();
  const s = session({ ...over({ get port() { return bothSides.port; } }, 'https')(), appId: 'facts', userId: me, key: FKEY });
  assert.ok((await settle(() => s.user(known).createIfNotExists({ name: 'X' }))).ok, 'an existing user: resolves');
  const fresh = await settle(() => s.user(uniqueUser('new')).createIfNotExists({ name: 'N' }));
  assert.equal(fresh.ok, false);
  assert.match(fresh.message, /403 USER_SYNC_DISABLED/);
  const log = await tlsBackend.log();
  assert.ok(log.some((e) => e.kind === 'http' && e.method === 'GET' && e.url === `/v1/facts/users/${known}`), 'the lookup went to the TLS backend');
  assert.equal((await tlsBackend.state('facts')).users[known].name, 'Known');
});
