// Every SDK call of protocol.md section 3 x user_sync in {on, off} x conversation_sync in
// {on, off}, through syncgate to the reference backend. Each promise resolves, or rejects
// with protocol.md section 7's errorCode and syncgate's reason; and the backend received
// exactly the frames that should have passed, byte for byte, in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startSyncgate, sleep } from '../lib/harness.mjs';
import { session, uniqueUser, firstSnapshot, settle, sent } from './sdk.mjs';
import { mayPass } from './sdk_scenarios.mjs';

const combos = [[1, 1], [1, 0], [0, 1], [0, 0]];
const appOf = ([u, c]) => `m_u${u}_c${c}`;
const keyOf = (app) => `sk_test_${app}`;
let be, sg;
before(async () => {
  const apps = Object.fromEntries(combos.map((c) => [appOf(c), keyOf(appOf(c))]));
  be = await startBackend({ apps });
  sg = await startSyncgate(be.port, combos.map((c) => `[app:${appOf(c)}]\nuser_sync = ${c[0] ? 'on' : 'off'}\nconversation_sync = ${c[1] ? 'on' : 'off'}\nsecret_key = ${keyOf(appOf(c))}\n`).join(''));
});
after(async () => { await sg.stop(); await be.stop(); setTimeout(() => process.exit(), 200).unref(); });

for (const combo of combos) {
  const [us, cs] = combo;
  test(`user_sync=${us ? 'on' : 'off'} conversation_sync=${cs ? 'on' : 'off'}`, async () => {
    const appId = appOf(combo), key = keyOf(appId);
    const me = uniqueUser('me'), bob = uniqueUser('bob'), conv = uniqueUser('cx');
    await be.seed({ appId, users: { [me]: { name: 'Me' }, [bob]: { name: 'Bob' } }, conversations: { [conv]: { subject: 'Seeded', participants: { [me]: {}, [bob]: {} } } } });
    const s = session({ host: `127.0.0.1:${sg.port}`, appId, userId: me, key });
    const cx = s.conversation(conv);
    const U = us ? null : 'USER_SYNC_DISABLED';
    const P = cs ? null : 'UNAUTHORIZED_TO_EDIT_PARTICIPANT';
    let msg;
    const calls = [
      ['UserRef.set', () => s.currentUser.set({ name: 'Renamed' }), U],
      ['UserRef.createIfNotExists (new user)', () => s.user(uniqueUser('new')).createIfNotExists({ name: 'N' }), U],
      ['UserRef.get', () => s.user(bob).get(), null],
      ['UserRef.subscribe', () => firstSnapshot((cb) => s.user(bob).subscribe(cb)), null],
      ['ConversationRef.set (new, subject)', () => s.conversation(uniqueUser('nc')).set({ subject: 'x' }), cs ? null : 'UNAUTHORIZED_TO_EDIT'],
      ['ConversationRef.createIfNotExists (new)', () => s.conversation(uniqueUser('nc')).createIfNotExists({ subject: 'y' }), cs ? null : 'CONVERSATION_SYNC_DISABLED'],
      ['ConversationRef.get', () => cx.get(), null],
      ['ConversationRef.send', async () => { msg = await cx.send('hello'); }, null],
      ['ConversationRef.markAsRead', () => cx.markAsRead(), null],
      ['ConversationRef.markAsUnread', () => cx.markAsUnread(), null],
      ['ConversationRef.markAsTyping', () => cx.markAsTyping(), null],
      ['ConversationRef.subscribeMessages', () => firstSnapshot((cb) => cx.subscribeMessages(cb), (x) => x && x.length >= 1), null],
      ['ConversationRef.subscribeParticipants', () => firstSnapshot((cb) => cx.subscribeParticipants(cb), (x) => x && x.length >= 2), null],
      ['MessageRef.edit', () => msg.edit('edited'), null],
      ['ReactionRef.add', () => msg.reaction('🎉').add(), null],
      ['ReactionRef.remove', () => msg.reaction('🎉').remove(), null],
      ['MessageRef.delete', () => msg.delete(), null],
      ['ParticipantRef.set (other user, access)', () => cx.participant(bob).set({ access: 'Read' }), P],
      ['ParticipantRef.edit (other user, notify)', () => cx.participant(bob).edit({ notify: false }), P],
      ['ParticipantRef.createIfNotExists (new participant)', () => cx.participant(uniqueUser('np')).createIfNotExists({}), P],
      ['ParticipantRef.delete', () => cx.participant(bob).delete(), P],
    ];
    const failures = [];
    for (const [name, f, code] of calls) {
      const r = await settle(f);
      if (code === null && !r.ok) failures.push(`${name}: rejected: ${r.message}`);
      if (code !== null) {
        if (r.ok) failures.push(`${name}: resolved, expected ${code}`);
        else if (!r.message.includes(code) || !r.message.includes('syncgate')) failures.push(`${name}: ${r.message}`);
      }
    }
    assert.deepEqual(failures, []);
    await sleep(300);
    const mine = (t) => t.url.includes(`/${appId}/realtime/${me}`);
    const expected = sent.filter(mine).map((t) => t.text).filter((t) => mayPass(t, combo));
    const got = (await be.log()).filter((e) => e.kind === 'ws' && e.appId === appId && e.user === me).map((e) => Buffer.from(e.raw, 'base64').toString('utf8'));
    assert.deepEqual(got, expected);
    if (!us || !cs) assert.ok(sent.filter(mine).length > expected.length, 'something was refused');
  });
}
