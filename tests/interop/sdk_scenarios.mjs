// The SDK scenario suite, parameterised by the address it connects to: run straight against
// the reference backend, and through syncgate with the switches on. Every SDK call of
// protocol.md section 3 resolves with the data a TalkJS user would expect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { session, uniqueUser, firstSnapshot } from './sdk.mjs';

// The oracle of the switch matrices: may client frame TEXT reach the backend under the
// switches [user_sync, conversation_sync]? (An independent reading of protocol.md 3 and 7,
// not syncgate's code.)
export function mayPass(text, [us, cs]) {
  const f = JSON.parse(text);
  if (f.length === 2) return true; // ACK
  const [, method, path] = f;
  if (['GET', 'SUBSCRIBE', 'UNSUBSCRIBE'].includes(method)) return true;
  const seg = path.split('/').slice(1);
  if (seg[0] === 'users' || (seg[0] === 'me' && seg.length === 1)) return !!us;
  if (seg[0] === 'conversations') return seg[2] === 'messages' ? true : !!cs;
  return true;
}

export function defineScenarios(name, getCtx, auth) {
  test(`${name} [${auth}]: users: set, get, createIfNotExists, subscribe, online`, async () => {
    const { host, apiUrls, appId, key } = getCtx();
    const me = uniqueUser('alice'), other = uniqueUser('bob');
    const s = session({ host, apiUrls, appId, userId: me, key, auth });
    await s.currentUser.set({ name: 'Alice', custom: { team: 'red' }, locale: 'nl-NL' });
    const snap = await s.currentUser.get();
    assert.equal(snap.name, 'Alice');
    assert.deepEqual(snap.custom, { team: 'red' });
    assert.equal(snap.locale, 'nl-NL');
    await s.currentUser.set({ custom: { team: null, size: 'xl' } });
    assert.deepEqual((await s.currentUser.get()).custom, { size: 'xl' });
    await s.user(other).createIfNotExists({ name: 'Bob' });
    await s.user(other).createIfNotExists({ name: 'Robert' }); // exists: a no-op that resolves
    assert.equal((await s.user(other).get()).name, 'Bob');
    assert.equal(await s.user(uniqueUser('nobody')).get(), null);
    const sub = await firstSnapshot((cb) => s.user(other).subscribe(cb));
    assert.equal(sub.name, 'Bob');
    const online = await firstSnapshot((cb) => s.user(me).subscribeOnline(cb));
    assert.equal(typeof online.isOnline, 'boolean');
  });

  test(`${name} [${auth}]: conversations, participants, messages, reactions, typing`, async () => {
    const { host, apiUrls, appId, key } = getCtx();
    const me = uniqueUser('alice'), bob = uniqueUser('bob'), carol = uniqueUser('carol');
    const s = session({ host, apiUrls, appId, userId: me, key, auth });
    await s.currentUser.set({ name: 'Alice' });
    await s.user(bob).createIfNotExists({ name: 'Bob' });
    await s.user(carol).createIfNotExists({ name: 'Carol' });
    const c = s.conversation(uniqueUser('conv'));
    await c.set({ subject: 'Launch', custom: { k: 'v' }, notify: 'MentionsOnly' });
    await c.createIfNotExists({ subject: 'ignored' }); // exists: resolves
    const cs = await c.get();
    assert.equal(cs.subject, 'Launch');
    assert.deepEqual(cs.custom, { k: 'v' });
    await c.set({ notify: false });
    await c.participant(bob).createIfNotExists({ access: 'ReadWrite' });
    await c.participant(bob).createIfNotExists({ access: 'Read' }); // exists: resolves
    await c.participant(bob).set({ notify: false });
    await c.participant(bob).edit({ access: 'Read' });
    const pb = await c.participant(bob).get();
    assert.equal(pb.access, 'Read');
    assert.equal(pb.notify, false);
    await c.participant(carol).set({ access: 'ReadWrite' });
    const parts = await firstSnapshot((cb) => c.subscribeParticipants(cb), (snap) => snap && snap.length === 3);
    assert.deepEqual(parts.map((p) => p.user.id).sort(), [me, bob, carol].sort());
    await c.participant(carol).delete();
    assert.equal(await c.participant(carol).get(), null);

    const m = await c.send('hello world');
    assert.ok(m.id);
    assert.equal((await m.get()).plaintext, 'hello world');
    await m.edit('hello, edited');
    assert.equal((await m.get()).plaintext, 'hello, edited');
    await m.reaction('👍').add();
    await m.reaction('👍').remove();
    const msgs = await firstSnapshot((cb) => c.subscribeMessages(cb), (snap) => snap && snap.length === 1);
    assert.equal(msgs[0].plaintext, 'hello, edited');
    await c.markAsRead();
    await c.markAsUnread();
    await c.markAsTyping();
    const m2 = await c.send('to delete');
    await m2.delete();
    assert.equal(await m2.get(), null);
  });
}
