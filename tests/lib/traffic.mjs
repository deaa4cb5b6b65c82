// Rounds of mixed traffic through syncgate, shared by the soak (tests/bench/soak.mjs) and the
// training run of the profile-guided build (scripts/pgo_train.mjs). The app must have both
// sync switches off and KEY as its secret key. Each round returns what went wrong ('' if
// nothing): the caller counts rounds and collects problems.
import net from 'node:net';
import { rawExchange, sleep } from './harness.mjs';
import { RawWs, frame, userToken } from './rawws.mjs';
import { session, uniqueUser, settle } from '../interop/sdk.mjs';

// One SDK session of a fresh user in a fresh conversation (seeded on BE): allowed calls
// (send, read state, a read, notify, createIfNotExists of an existing user, which syncgate
// answers from a lookup) and refused ones (user and conversation sync, a new conversation).
export async function sdkRound({ be, port, appId, key, tag }) {
  const me = uniqueUser(tag), cid = uniqueUser('c');
  await be.seed({ appId, users: { [me]: {} }, conversations: { [cid]: { participants: { [me]: {} } } } });
  const s = session({ host: `127.0.0.1:${port}`, appId, userId: me, key });
  const c = s.conversation(cid);
  const ok = [await settle(() => c.send('hello')), await settle(() => c.markAsRead()), await settle(() => s.user(me).get()),
    await settle(() => c.set({ notify: false })), await settle(() => s.user(me).createIfNotExists({ name: 'x' }))];
  const refused = [await settle(() => s.currentUser.set({ name: 'no' })), await settle(() => c.set({ subject: 'no' })),
    await settle(() => s.conversation(uniqueUser('new')).createIfNotExists())];
  return ok.every((r) => r.ok) && !refused.some((r) => r.ok) ? '' : `sdk: ${JSON.stringify([...ok, ...refused])}`;
}

const BAD_HEADS = ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'GET /\x00 HTTP/1.1\r\n\r\n',
  `GET /${'a'.repeat(10000)} HTTP/1.1\r\n\r\n`];

// Hostile input, round N: a malformed or smuggling head (must be closed), a realtime call with
// duplicate keys (must be answered 400), a socket abandoned mid-fragment, a body cut short.
export async function hostileRound({ port, appId, key, n, idle = 1000 }) {
  const problems = [];
  const r = await rawExchange(port, BAD_HEADS[n % BAD_HEADS.length], { idle });
  if (!r.closed) problems.push('hostile http not closed');
  const ws = await RawWs.open(port, `/v1/${appId}/realtime/h`);
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken(appId, 'h', key) }, {}]));
  await ws.json(0);
  ws.sendText('[1,"PUT","/users/h",{"a":1,"a":2},{}]');
  const a = await ws.json(1);
  if (!a || a[1] !== 400) problems.push('duplicate keys not refused');
  ws.send(frame(1, '[2,', { fin: false }));
  ws.destroy(); // abandoned mid-fragment
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.write('POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nxx');
  await sleep(50);
  s.destroy();
  return problems.join(', ');
}
