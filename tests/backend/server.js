// The reference chat backend: a TalkJS-compatible backend with in-memory state, the
// unprotected server syncgate stands in front of in tests and in `make run`.
// It enforces no browser-sync switch. Everything it speaks is ../shared/protocol.md 1-4.
//
//   node tests/backend/server.js --listen 127.0.0.1:PORT --control 127.0.0.1:PORT2 \
//        --app APPID=SECRET_KEY [--app ...] [--keepalive-ms N]
//        [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]   (https and wss; with a client
//        CA, a client certificate signed by it is required)
//        [--origin KIND=HOST:PORT[,host=EXPECTED][,tls[,cert=PEM,key=PEM]] ...]
//
// Hosted origins (--origin, repeatable): extra listeners sharing the same state, each answering
// only its own part of TalkJS's hosted service, as realtime.talkjs.com / app.talkjs.com /
// api.talkjs.com do (protocol.md 1, "no host"):
//   realtime  only the WebSocket upgrade GET /v1/{app}/realtime/{user}
//   app       only /api/v0/{app}[/...] (U2, U3, CORS preflight)
//   rest      only /v1/{app}/... (REST, files, search); never the realtime path, never /public_api
// Anything else is answered 404 {"errorCode":"WRONG_ORIGIN"} (an upgrade too, then closed). With
// host=EXPECTED, a Host header other than EXPECTED (compared without case) is answered 421
// {"errorCode":"WRONG_HOST"} first. ",tls" serves https/wss with cert=/key= if given, else with
// --tls-cert/--tls-key (which also make the main listener TLS). The main listener (--listen)
// answers everything, as before.
//
// Legacy API (main listener only): an old HTTP sync API with its own URL scheme that takes no
// credential at all (hence a proxy in front), and parses JSON leniently (JSON.parse: the last
// of duplicate keys wins). Writes go to the same state as everything else.
//   GET  /legacy/{app}/users/{uid}                              the user, or 404
//   PUT|PATCH /legacy/{app}/users/{uid}                         upsert; body: user fields
//   POST /legacy/{app}/users/{uid}                              create; 409 USER_ALREADY_EXISTS
//   POST /legacy/{app}/users                                    create; body {"id": "...", fields}
//   GET  /legacy/{app}/conversations/{cid}                      the conversation, or 404
//   POST /legacy/{app}/conversations                            create; body {"id", "subject", ...,
//                                                               "participants": [uid, ...]}; 409 if it exists
//   PUT  /legacy/{app}/conversations/{cid}/members/{uid}        add or change; body {"access", "notify"}
//
// Control interface (on --control only): GET /log (every HTTP request and WebSocket message
// received, in order, raw bytes base64; each entry names the listener that received it,
// `origin`: "main" or the KIND, and HTTP entries the `host` header received and `refused`:
// "WRONG_ORIGIN" / "WRONG_HOST" when the origin turned it away), GET /raw (every byte
// received per TCP connection),
// POST /reset, POST /seed {appId, users:{id:{...}}, conversations:{id:{subject,..,participants:{uid:{access,notify}}}}},
// GET /state?appId=.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';

function parseArgs(argv) {
  const o = { apps: {}, keepaliveMs: 5000, origins: [] };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--listen') { o.listen = v; i++; }
    else if (a === '--control') { o.control = v; i++; }
    else if (a === '--app') { const [id, key] = v.split('='); o.apps[id] = key; i++; }
    else if (a === '--keepalive-ms') { o.keepaliveMs = Number(v); i++; }
    else if (a === '--tls-cert') { o.tlsCert = v; i++; }
    else if (a === '--tls-key') { o.tlsKey = v; i++; }
    else if (a === '--tls-client-ca') { o.tlsClientCa = v; i++; }
    else if (a === '--origin') { o.origins.push(parseOrigin(v)); i++; }
    else { console.error(`unknown argument ${a}`); process.exit(2); }
  }
  if (!o.listen || !o.control) { console.error('usage: server.js --listen H:P --control H:P --app ID=KEY'); process.exit(2); }
  for (const og of o.origins) {
    if (og.tls && !og.cert && !o.tlsCert) { console.error(`--origin ${og.kind}: tls needs cert=/key= or --tls-cert/--tls-key`); process.exit(2); }
    if (og.tls && !og.cert) { og.cert = o.tlsCert; og.key = o.tlsKey; }
  }
  return o;
}
// --origin KIND=HOST:PORT[,host=EXPECTED][,tls][,cert=PEM][,key=PEM]
function parseOrigin(v) {
  const bad = (why) => { console.error(`--origin ${v}: ${why}`); process.exit(2); };
  const [first, ...flags] = String(v).split(',');
  const m = /^(realtime|app|rest)=(.+:\d+)$/.exec(first || '');
  if (!m) bad('expected KIND=HOST:PORT with KIND realtime, app or rest');
  const og = { kind: m[1], listen: m[2], host: null, tls: false, cert: null, key: null };
  for (const f of flags) {
    const i = f.indexOf('='), k = i < 0 ? f : f.slice(0, i), val = i < 0 ? null : f.slice(i + 1);
    if (k === 'tls' && val === null) og.tls = true;
    else if (k === 'host' && val) og.host = val;
    else if (k === 'cert' && val) og.cert = val;
    else if (k === 'key' && val) og.key = val;
    else bad(`unknown option '${f}'`);
  }
  if (!og.cert !== !og.key) bad('cert= and key= go together');
  if (og.cert) og.tls = true;
  return og;
}
const opts = parseArgs(process.argv);
const hostPort = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i).replace(/^\[|\]$/g, ''), Number(s.slice(i + 1))]; };

// ---- state ----
let state, log, raw, sockSeq = 0, msgSeq = 0;
function reset() {
  state = {};
  for (const id of Object.keys(opts.apps)) state[id] = { users: new Map(), conversations: new Map() };
  log = []; raw = new Map();
}
reset();
const now = () => Date.now();

// ---- tokens ----
const b64u = (b) => Buffer.from(b).toString('base64url');
function signJwt(payload, key) {
  const h = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' })), p = b64u(JSON.stringify(payload));
  const s = crypto.createHmac('sha256', key).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}
function verifyJwt(tok, key) {
  if (typeof tok !== 'string') return null;
  const parts = tok.split('.');
  if (parts.length !== 3) return null;
  let hdr, claims;
  try { hdr = JSON.parse(Buffer.from(parts[0], 'base64url')); claims = JSON.parse(Buffer.from(parts[1], 'base64url')); } catch { return null; }
  if (!hdr || hdr.alg !== 'HS256') return null;
  const want = crypto.createHmac('sha256', key).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return null;
  const t = Math.floor(now() / 1000);
  if (typeof claims.exp === 'number' && claims.exp < t) return null;
  if (typeof claims.nbf === 'number' && claims.nbf > t + 60) return null;
  return claims;
}
const sigOk = (key, uid, sig) => typeof sig === 'string' && /^[0-9a-fA-F]{64}$/.test(sig) &&
  crypto.timingSafeEqual(Buffer.from(sig.toLowerCase()), Buffer.from(crypto.createHmac('sha256', key).update(uid).digest('hex')));

// ---- model ----
const err = (status, errorCode, reason) => ({ status, data: { errorCode, reasons: [reason] } });
const ok = (data = {}) => ({ status: 200, data });
function patchCustom(old, upd) {
  if (upd === undefined) return old;
  const c = { ...(old || {}) };
  for (const [k, v] of Object.entries(upd || {})) { if (v === null) delete c[k]; else c[k] = v; }
  return c;
}
const USER_FIELDS = ['name', 'locale', 'photoUrl', 'role', 'welcomeMessage', 'email', 'phone', 'pushTokens'];
function upsertUser(app, uid, data, create) {
  const u = app.users.get(uid) || { id: uid, createdAt: now(), custom: {} };
  for (const f of USER_FIELDS) if (data[f] !== undefined) u[f] = data[f];
  u.custom = patchCustom(u.custom, data.custom);
  app.users.set(uid, u);
  return u;
}
const publicUser = (u) => ({ id: u.id, name: u.name ?? null, custom: u.custom || {}, locale: u.locale ?? null, photoUrl: u.photoUrl ?? null, role: u.role ?? null, welcomeMessage: u.welcomeMessage ?? null, createdAt: u.createdAt });
const CONV_FIELDS = ['subject', 'photoUrl', 'welcomeMessages'];
function upsertConv(app, cid, data) {
  const c = app.conversations.get(cid) || { id: cid, createdAt: now(), custom: {}, participants: new Map(), messages: [] };
  for (const f of CONV_FIELDS) if (data[f] !== undefined) c[f] = data[f];
  c.custom = patchCustom(c.custom, data.custom);
  app.conversations.set(cid, c);
  return c;
}
function convFor(c, uid) {
  const p = c.participants.get(uid) || {};
  const last = c.messages[c.messages.length - 1];
  return { id: c.id, createdAt: c.createdAt, subject: c.subject ?? null, photoUrl: c.photoUrl ?? null, welcomeMessages: c.welcomeMessages ?? null, custom: c.custom || {}, lastMessageAt: last ? last.createdAt : null, unreadMessageCount: 0, isUnread: false, access: p.access ?? 'ReadWrite', notify: p.notify ?? true, readUntil: now(), everyoneReadUntil: now(), joinedAt: p.joinedAt ?? c.createdAt };
}
function participantAction(app, cid, uid, method, params, appId) {
  const c = app.conversations.get(cid);
  if (!c) return { status: 404, errorCode: 'CONVERSATION_NOT_FOUND', reasons: [`no conversation ${cid}`] };
  const exists = c.participants.has(uid);
  if (method === 'POST' && exists) return { status: 409, errorCode: 'PARTICIPANT_ALREADY_EXISTS', reasons: ['already a participant'] };
  if (method === 'PATCH' && !exists) return { status: 404, errorCode: 'PARTICIPANT_NOT_FOUND', reasons: ['not a participant'] };
  const p = c.participants.get(uid) || { joinedAt: now(), access: 'ReadWrite', notify: true };
  if (params && params.access !== undefined) p.access = params.access;
  if (params && params.notify !== undefined) p.notify = params.notify;
  c.participants.set(uid, p);
  if (appId) publish(appId, exists ? { type: 'participant.edited', conversationId: cid, userId: uid, diff: pick(params, ['access', 'notify']) }
    : { type: 'participant.created', conversationId: cid, userId: uid, state: { id: uid, access: p.access, notify: p.notify, joinedAt: p.joinedAt } });
  return { status: 200 };
}

// ---- realtime ----
// Events go to every authenticated realtime socket of the app; the SDK drops those for
// entities it holds no store for. Publish ids increase per connection (protocol.md 2).
const subs = new Map(); // socket -> {appId, me, pub, paths:Set, sess}
function publish(appId, event) {
  for (const [ws, s] of subs) {
    if (s.appId !== appId || !s.sess.authed) continue;
    s.pub++;
    ws.send(JSON.stringify([s.pub, 'PUBLISH', event]));
  }
}
const pick = (o, keys) => Object.fromEntries(keys.filter((k) => o && o[k] !== undefined).map((k) => [k, o[k]]));

function realtimeCall(sess, method, path, data) {
  const app = state[sess.appId];
  const seg = path.split('/').slice(1).map(decodeURIComponent);
  const key = seg.join('/');
  if (key === 'ping' && method === 'GET') return ok({});
  if (key === 'session/renew' && method === 'POST') {
    const claims = verifyJwt(data.token, opts.apps[sess.appId]);
    if (!claims || claims.iss !== sess.appId || claims.sub !== sess.me || claims.tokenType !== 'user')
      return err(401, 'INVALID_TOKEN', 'token invalid for this user');
    sess.authed = true;
    return ok({ expiresInSeconds: typeof claims.exp === 'number' ? claims.exp - Math.floor(now() / 1000) : null });
  }
  if (!sess.authed) return err(401, 'NOT_AUTHENTICATED', 'renew the session first');
  if (method === 'SUBSCRIBE') { for (const id of (key === 'users' && data.ids) || []) sess.sub.paths.add(`users/${id}`); sess.sub.paths.add(key); return ok({}); }
  if (method === 'UNSUBSCRIBE') { sess.sub.paths.delete(key); return ok({}); }
  const [a, b, c, d, e] = seg;
  if (a === 'users') {
    if (seg.length === 1 && method === 'GET') {
      const out = {};
      for (const id of data.ids || []) { const u = app.users.get(id); if (u) out[id] = publicUser(u); }
      return ok(out);
    }
    if (seg.length === 2 && method === 'GET') { const u = app.users.get(b); return u ? ok(publicUser(u)) : err(404, 'NOT_FOUND', 'no such user'); }
    if (seg.length === 3 && c === 'online' && method === 'GET') return ok({ isOnline: [...subs.values()].some((s) => s.appId === sess.appId && s.me === b) });
    if (seg.length === 2 && (method === 'PUT' || method === 'POST')) {
      const existed = app.users.has(b);
      if (method === 'POST' && existed) return err(409, 'USER_ALREADY_EXISTS', 'user exists');
      const u = upsertUser(app, b, data);
      publish(sess.appId, existed ? { type: 'user.edited', userId: b, diff: pick(data, ['name', 'custom', 'locale', 'photoUrl', 'role', 'welcomeMessage']) }
        : { type: 'user.created', userId: b, state: publicUser(u) });
      return ok({});
    }
  }
  if (a === 'conversations' && b) {
    const conv = app.conversations.get(b);
    if (seg.length === 2 && (method === 'PUT' || method === 'POST')) {
      if (method === 'POST' && conv) return err(409, 'CONVERSATION_ALREADY_EXISTS', 'conversation exists');
      upsertConv(app, b, data);
      if (conv) publish(sess.appId, { type: 'conversation.edited', conversationId: b, diff: pick(data, ['subject', 'photoUrl', 'welcomeMessages', 'custom']) });
      return ok({});
    }
    if (c === 'participants') {
      if (seg.length === 3 && method === 'POST') {
        if (!Array.isArray(data.actions)) return err(400, 'INVALID_REQUEST', 'actions expected');
        return ok({ responses: data.actions.map((x) => participantAction(app, b, x.id, x.method, x.params, sess.appId)) });
      }
      if (seg.length === 4 && method === 'DELETE') {
        if (!conv || !conv.participants.has(d)) return err(404, 'PARTICIPANT_NOT_FOUND', 'not a participant');
        conv.participants.delete(d);
        publish(sess.appId, { type: 'participant.deleted', conversationId: b, userId: d });
        return ok({});
      }
      if (seg.length === 4) { const r = participantAction(app, b, d, method, data, sess.appId); return r.status === 200 ? ok({}) : { status: r.status, data: { errorCode: r.errorCode, reasons: r.reasons } }; }
    }
    if (c === 'messages') {
      if (!conv) return err(404, 'CONVERSATION_NOT_FOUND', 'no such conversation');
      if (!conv.participants.has(sess.me)) return err(403, 'NOT_A_PARTICIPANT', 'not a participant');
      if (seg.length === 3 && method === 'POST') {
        const m = { id: `msg_${++msgSeq}`, type: 'UserMessage', senderId: sess.me, content: data.content, custom: data.custom || {}, referencedMessageId: data.referencedMessageId ?? null, createdAt: now(), editedAt: null, origin: 'rest', reactions: {} };
        conv.messages.push(m);
        publish(sess.appId, { type: 'message.created', conversationId: b, state: m });
        return ok({ id: m.id });
      }
      const m = conv.messages.find((x) => x.id === d);
      if (!m) return err(404, 'MESSAGE_NOT_FOUND', 'no such message');
      if (seg.length === 4 && method === 'PATCH') {
        if (data.content) m.content = data.content;
        m.custom = patchCustom(m.custom, data.custom); m.editedAt = now();
        publish(sess.appId, { type: 'message.edited', conversationId: b, messageId: d, diff: { ...pick(data, ['content', 'custom']), editedAt: m.editedAt } });
        return ok({});
      }
      if (seg.length === 4 && method === 'DELETE') {
        conv.messages.splice(conv.messages.indexOf(m), 1);
        publish(sess.appId, { type: 'message.deleted', conversationId: b, messageId: d });
        return ok({});
      }
      if (seg.length === 7 && e === 'reactions') {
        const emoji = seg[5];
        m.reactions[emoji] = m.reactions[emoji] || {};
        if (method === 'PUT') m.reactions[emoji][sess.me] = { createdAt: now() }; else delete m.reactions[emoji][sess.me];
        return ok({});
      }
    }
  }
  if (a === 'me' && b === 'conversations') {
    if (seg.length === 2 && method === 'GET') {
      const list = [...app.conversations.values()].filter((x) => x.participants.has(sess.me)).map((x) => convFor(x, sess.me));
      const limit = Math.max(1, Math.min(100, data.limit || 30)), start = data.cursor ? Number(data.cursor) : 0;
      return ok({ data: list.slice(start, start + limit), cursor: start + limit < list.length ? String(start + limit) : null });
    }
    const conv = app.conversations.get(c);
    if (seg.length === 4 && method === 'POST' && ['read', 'unread', 'typing'].includes(d)) return conv ? ok({}) : err(404, 'CONVERSATION_NOT_FOUND', 'no such conversation');
    if (method === 'GET') {
      if (!conv) return err(404, 'CONVERSATION_NOT_FOUND', 'no such conversation');
      if (!conv.participants.has(sess.me)) return err(403, 'NOT_A_PARTICIPANT', 'not a participant');
      if (seg.length === 3) return ok(convFor(conv, sess.me));
      if (d === 'messages' && seg.length === 4) {
        const list = [...conv.messages].reverse(), limit = data.limit || 30, start = data.cursor ? Number(data.cursor) : 0;
        return ok({ data: list.slice(start, start + limit), cursor: start + limit < list.length ? String(start + limit) : null });
      }
      if (d === 'messages' && seg.length === 5) { const m = conv.messages.find((x) => x.id === e); return m ? ok(m) : err(404, 'MESSAGE_NOT_FOUND', 'no such message'); }
      if (d === 'participants' && seg.length === 4) return ok({ data: [...conv.participants].map(([uid, p]) => ({ id: uid, user: publicUser(app.users.get(uid) || { id: uid }), ...p })), cursor: null });
      if (d === 'participants' && seg.length === 5) { const p = conv.participants.get(e); return p ? ok({ user: publicUser(app.users.get(e) || { id: e }), ...p }) : err(404, 'PARTICIPANT_NOT_FOUND', 'not a participant'); }
      if (d === 'typing') return ok({ type: 'none' });
      if (d === 'translate') return ok({ data: {} });
    }
  }
  if (a === 'files' && b === 'validate' && method === 'POST') return ok({});
  return err(404, 'NOT_FOUND', `no route ${method} ${path}`);
}

function onRealtime(ws, appId, me, sockId, origin = 'main') {
  const sess = { appId, me, authed: false };
  sess.sub = { appId, me, pub: 0, paths: new Set(), sess };
  subs.set(ws, sess.sub);
  ws.on('message', (buf, isBinary) => {
    log.push({ kind: 'ws', origin, socket: sockId, appId, user: me, binary: !!isBinary, raw: Buffer.from(buf).toString('base64') });
    let f;
    try { f = JSON.parse(buf.toString('utf8')); } catch { return; }
    if (!Array.isArray(f)) return;
    if (f.length === 2 && f[1] === 'ACK') return;
    const [seq, method, path, data] = f;
    let r;
    try { r = realtimeCall(sess, method, path, data || {}); } catch (e) { r = err(400, 'INVALID_REQUEST', String(e.message)); }
    ws.send(JSON.stringify([seq, r.status, r.data]));
  });
  ws.on('close', () => subs.delete(ws));
}

// ---- HTTP ----
function cors(req, res) {
  res.setHeader('Access-Control-Allow-Origin', req.headers.origin || '*');
  res.setHeader('Access-Control-Allow-Headers', req.headers['access-control-request-headers'] || '*');
  res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, PATCH, DELETE, OPTIONS');
}
function send(res, status, body, type = 'application/json') {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': b.length });
  res.end(b);
}
function restAuth(req, appId) {
  const h = req.headers.authorization || '';
  const m = /^Bearer (.+)$/.exec(h);
  if (!m) return null;
  const key = opts.apps[appId];
  if (m[1] === key) return 'server';
  const c = verifyJwt(m[1], key);
  if (c && c.iss === appId && c.tokenType === 'app') return 'server';
  if (c && c.iss === appId && c.tokenType === 'user') return 'user:' + c.sub;
  return null;
}
function handleHttp(req, res, body) {
  cors(req, res);
  if (req.method === 'OPTIONS') { res.writeHead(204); res.end(); return; }
  const url = new URL(req.url, 'http://x');
  const seg = url.pathname.split('/').slice(1).map(decodeURIComponent);
  if (url.pathname === '/' && req.method === 'GET') {
    // what `make run`'s banner points at: this backend says what it is and what to try
    send(res, 200, { service: 'syncgate reference chat backend', apps: Object.keys(opts.apps),
      try: ['GET /v1/demo/users/alice with Authorization: Bearer <the app secret key or a user token>',
        'the realtime socket at /v1/demo/realtime/alice (the @talkjs/core SDK with host set to this address)'] });
    return;
  }
  if (seg[0] === 'legacy') { handleLegacy(req, res, seg, body); return; }
  if (seg[0] === 'echo') { send(res, 200, body, req.headers['content-type'] || 'application/octet-stream'); return; }
  if (seg[0] === 'bytes') { const n = Number(seg[1] || 0); send(res, 200, Buffer.alloc(n, 'x').toString(), 'text/plain'); return; }
  if (seg[0] === 'chunked') { const n = Number(seg[1] || 0); res.writeHead(200, { 'Content-Type': 'text/plain' }); let left = n; while (left > 0) { const k = Math.min(left, 65536); res.write('y'.repeat(k)); left -= k; } res.end(); return; }
  if (seg[0] === 'stall') { return; }
  if (seg[0] === 'api' && seg[1] === 'v0') {
    const appId = seg[2];
    if (!state[appId]) { send(res, 404, { errorCode: 'APP_NOT_FOUND', reasons: ['no such app'] }); return; }
    if (seg.length === 3) { send(res, 200, { id: appId }); return; }
    if (seg[3] === 'bokens' && seg.length === 5) {
      if (!sigOk(opts.apps[appId], seg[4], url.searchParams.get('signature'))) { send(res, 401, { errorCode: 'INVALID_SIGNATURE', reasons: ['bad signature'] }); return; }
      send(res, 200, { boken: signJwt({ iss: appId, sub: seg[4], tokenType: 'user', exp: Math.floor(now() / 1000) + 3600 }, opts.apps[appId]) });
      return;
    }
  }
  let base = -1;
  if (seg[0] === 'v1') base = 1; else if (seg[0] === 'public_api' && seg[1] === 'v1') base = 2;
  if (base > 0) {
    const appId = seg[base], app = state[appId], rest = seg.slice(base + 1);
    if (!app) { send(res, 404, { errorCode: 'APP_NOT_FOUND', reasons: ['no such app'] }); return; }
    const who = restAuth(req, appId);
    if (!who) { send(res, 401, { errorCode: 'UNAUTHORIZED', reasons: ['bad credentials'] }); return; }
    let data = {};
    if (body.length) { try { data = JSON.parse(body.toString('utf8')); } catch { if (rest[0] !== 'files') { send(res, 400, { errorCode: 'INVALID_JSON', reasons: ['bad json'] }); return; } } }
    if (rest[0] === 'files' && req.method === 'POST') { send(res, 200, { fileToken: crypto.randomBytes(8).toString('hex') }); return; }
    if (rest[0] === 'me' && rest[2] === 'search') { res.writeHead(200, { 'Content-Type': 'application/x-ndjson' }); res.end(JSON.stringify({ type: 'done' }) + '\n'); return; }
    if (rest[0] === 'users' && rest.length === 2) {
      if (req.method === 'GET') { const u = app.users.get(rest[1]); send(res, u ? 200 : 404, u ? publicUser(u) : { errorCode: 'NOT_FOUND', reasons: ['no such user'] }); return; }
      if (req.method === 'PUT' || req.method === 'POST') { upsertUser(app, rest[1], data); send(res, 200, {}); return; }
    }
    if (rest[0] === 'conversations' && rest.length >= 2) {
      const conv = app.conversations.get(rest[1]);
      if (rest.length === 2 && req.method === 'GET') {
        if (!conv) { send(res, 404, { errorCode: 'NOT_FOUND', reasons: ['no such conversation'] }); return; }
        send(res, 200, { id: conv.id, subject: conv.subject ?? null, custom: conv.custom, createdAt: conv.createdAt, participants: Object.fromEntries([...conv.participants].map(([u, p]) => [u, { access: p.access, notify: p.notify }])) });
        return;
      }
      if (rest.length === 2 && (req.method === 'PUT' || req.method === 'POST')) {
        const c = upsertConv(app, rest[1], data);
        for (const uid of data.participants || []) if (!c.participants.has(uid)) c.participants.set(uid, { access: 'ReadWrite', notify: true, joinedAt: now() });
        send(res, 200, {}); return;
      }
      if (rest[2] === 'participants' && rest.length === 4) {
        if (req.method === 'DELETE') { if (!conv || !conv.participants.delete(rest[3])) { send(res, 404, { errorCode: 'NOT_FOUND', reasons: ['not a participant'] }); return; } send(res, 200, {}); return; }
        const r = participantAction(app, rest[1], rest[3], req.method === 'PATCH' ? 'PATCH' : 'PUT', data);
        send(res, r.status, r.status === 200 ? {} : r); return;
      }
      if (rest[2] === 'messages' && req.method === 'POST') { if (!conv) { send(res, 404, {}); return; } const m = { id: `msg_${++msgSeq}`, type: 'SystemMessage', content: data.content, createdAt: now(), custom: {}, reactions: {} }; conv.messages.push(m); send(res, 200, { id: m.id }); return; }
    }
    send(res, 404, { errorCode: 'NOT_FOUND', reasons: [`no route ${req.method} ${url.pathname}`] });
    return;
  }
  send(res, 404, { errorCode: 'NOT_FOUND', reasons: ['no route'] });
}

// The legacy API (see the top of this file): no credential, lenient JSON, same state.
function handleLegacy(req, res, seg, body) {
  const appId = seg[1], app = state[appId];
  if (!app) { send(res, 404, { errorCode: 'APP_NOT_FOUND', reasons: ['no such app'] }); return; }
  let data = {};
  if (body.length) {
    try { data = JSON.parse(body.toString('utf8')); } catch { send(res, 400, { errorCode: 'INVALID_JSON', reasons: ['bad json'] }); return; }
  }
  const obj = data !== null && typeof data === 'object' && !Array.isArray(data) ? data : null;
  const m = req.method, n = seg.length, [, , a, b, c, d] = seg;
  const notObject = () => send(res, 400, { errorCode: 'INVALID_REQUEST', reasons: ['a JSON object expected'] });
  const noId = () => send(res, 400, { errorCode: 'INVALID_REQUEST', reasons: ['"id" (a string) expected'] });
  if (a === 'users' && n === 4 && m === 'GET') {
    const u = app.users.get(b);
    send(res, u ? 200 : 404, u ? publicUser(u) : { errorCode: 'NOT_FOUND', reasons: ['no such user'] });
    return;
  }
  if ((a === 'users' && n === 4 && ['PUT', 'PATCH', 'POST'].includes(m)) || (a === 'users' && n === 3 && m === 'POST')) {
    if (!obj) { notObject(); return; }
    const { id: bodyId, ...fields } = obj;
    const uid = n === 4 ? b : bodyId;
    if (typeof uid !== 'string' || !uid) { noId(); return; }
    const existed = app.users.has(uid);
    if (m === 'POST' && existed) { send(res, 409, { errorCode: 'USER_ALREADY_EXISTS', reasons: [`user ${uid} exists`] }); return; }
    const u = upsertUser(app, uid, fields);
    publish(appId, existed ? { type: 'user.edited', userId: uid, diff: pick(fields, ['name', 'custom', 'locale', 'photoUrl', 'role', 'welcomeMessage']) }
      : { type: 'user.created', userId: uid, state: publicUser(u) });
    send(res, m === 'POST' ? 201 : 200, publicUser(u));
    return;
  }
  if (a === 'conversations' && n === 4 && m === 'GET') {
    const conv = app.conversations.get(b);
    if (!conv) { send(res, 404, { errorCode: 'NOT_FOUND', reasons: ['no such conversation'] }); return; }
    send(res, 200, { id: conv.id, subject: conv.subject ?? null, custom: conv.custom, members: Object.fromEntries([...conv.participants].map(([u, p]) => [u, { access: p.access, notify: p.notify }])) });
    return;
  }
  if (a === 'conversations' && n === 3 && m === 'POST') {
    if (!obj) { notObject(); return; }
    const { id: cid, participants, ...fields } = obj;
    if (typeof cid !== 'string' || !cid) { noId(); return; }
    if (app.conversations.has(cid)) { send(res, 409, { errorCode: 'CONVERSATION_ALREADY_EXISTS', reasons: [`conversation ${cid} exists`] }); return; }
    const conv = upsertConv(app, cid, fields);
    for (const uid of Array.isArray(participants) ? participants : []) conv.participants.set(String(uid), { access: 'ReadWrite', notify: true, joinedAt: now() });
    send(res, 201, { id: cid });
    return;
  }
  if (a === 'conversations' && n === 6 && c === 'members' && m === 'PUT') {
    if (!obj) { notObject(); return; }
    const r = participantAction(app, b, d, 'PUT', obj, appId);
    send(res, r.status, r.status === 200 ? {} : { errorCode: r.errorCode, reasons: r.reasons });
    return;
  }
  send(res, 404, { errorCode: 'NOT_FOUND', reasons: [`no legacy route ${m} ${req.url}`] });
}

// What a hosted origin (--origin) turns away: null, or {status, errorCode, reason}. The main
// listener turns nothing away.
function originRefusal(og, req, upgrade) {
  if (og.kind === 'main') return null;
  const host = req.headers.host;
  if (og.host && (host || '').toLowerCase() !== og.host.toLowerCase())
    return { status: 421, errorCode: 'WRONG_HOST', reason: `the ${og.kind} origin is ${og.host}, not ${host === undefined ? '(no Host)' : host}` };
  let seg;
  try { seg = new URL(req.url, 'http://x').pathname.split('/').slice(1).map(decodeURIComponent); } catch { seg = []; }
  let mine = false;
  if (og.kind === 'realtime') mine = upgrade && req.method === 'GET' && seg.length === 4 && seg[0] === 'v1' && !!seg[1] && seg[2] === 'realtime' && !!seg[3];
  else if (og.kind === 'app') mine = !upgrade && seg.length >= 3 && seg[0] === 'api' && seg[1] === 'v0' && !!seg[2];
  else if (og.kind === 'rest') mine = !upgrade && seg.length >= 2 && seg[0] === 'v1' && !!seg[1] && seg[2] !== 'realtime';
  return mine ? null : { status: 404, errorCode: 'WRONG_ORIGIN', reason: `${req.method} ${req.url}${upgrade ? ' (upgrade)' : ''} is not served by the ${og.kind} origin` };
}

// Every byte each TCP connection delivers is recorded before the HTTP parser sees it.
class Tap extends Duplex {
  constructor(sock, id) {
    super();
    this.sock = sock; this.id = id;
    this.remoteAddress = sock.remoteAddress; this.remotePort = sock.remotePort;
    // a copy: the WebSocket receiver unmasks frames in place in the chunk it is handed
    sock.on('data', (d) => { raw.get(id).push(Buffer.from(d)); if (!this.push(d)) sock.pause(); });
    sock.on('end', () => this.push(null));
    sock.on('close', () => this.destroy());
    sock.on('error', (e) => this.destroy(e));
  }
  _read() { this.sock.resume(); }
  _write(chunk, enc, cb) { this.sock.write(chunk, cb); }
  _final(cb) { this.sock.end(); cb(); }
  _destroy(e, cb) { this.sock.destroy(); cb(e); }
  setTimeout(ms, cb) { this.sock.setTimeout(ms, cb); return this; }
  setNoDelay(v) { this.sock.setNoDelay(v); return this; }
  setKeepAlive(a, b) { this.sock.setKeepAlive(a, b); return this; }
  get bytesWritten() { return this.sock.bytesWritten; }
}

// One HTTP server per listener: the main one (OG.kind "main") and each hosted origin. They
// share the state, the log, the raw capture and the realtime subscriptions.
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
function makeServer(og) {
  const entry = (req, sockId, body) => ({ kind: 'http', origin: og.kind, host: req.headers.host ?? null, socket: sockId, method: req.method, url: req.url, httpVersion: req.httpVersion, rawHeaders: req.rawHeaders, body });
  const server = http.createServer({ keepAliveTimeout: opts.keepaliveMs, requestTimeout: 0, headersTimeout: 60000 }, (req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const e = entry(req, req.socket.id, body.toString('base64'));
      log.push(e);
      const no = originRefusal(og, req, false);
      if (no) { e.refused = no.errorCode; cors(req, res); send(res, no.status, { errorCode: no.errorCode, reasons: [no.reason] }); return; }
      handleHttp(req, res, body);
    });
  });
  server.on('upgrade', (req, socket, head) => {
    const e = entry(req, socket.id, '');
    log.push(e);
    const no = originRefusal(og, req, true);
    if (no) {
      e.refused = no.errorCode;
      const b = JSON.stringify({ errorCode: no.errorCode, reasons: [no.reason] });
      socket.end(`HTTP/1.1 ${no.status} ${http.STATUS_CODES[no.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\nConnection: close\r\n\r\n${b}`);
      return;
    }
    const seg = new URL(req.url, 'http://x').pathname.split('/').slice(1).map(decodeURIComponent);
    let base = -1;
    if (seg[0] === 'v1') base = 1; else if (seg[0] === 'public_api' && seg[1] === 'v1') base = 2;
    const appId = seg[base], isRt = base > 0 && seg[base + 1] === 'realtime' && seg.length === base + 3;
    if (seg[0] === 'echo-ws') { wss.handleUpgrade(req, socket, head, (ws) => { ws.on('message', (d, bin) => { log.push({ kind: 'ws', origin: og.kind, socket: socket.id, binary: bin, raw: Buffer.from(d).toString('base64') }); ws.send(d, { binary: bin }); }); }); return; }
    if (!isRt || !state[appId]) { socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'); return; }
    wss.handleUpgrade(req, socket, head, (ws) => onRealtime(ws, appId, seg[base + 2], socket.id, og.kind));
  });
  return server;
}
// Plain: every TCP connection is tapped. TLS: every handshake is logged (resumed? which name
// was asked for? which client certificate?) and the plaintext is tapped.
function makeListener(og, server, tlsFiles) {
  const accept = (sock) => {
    const id = ++sockSeq;
    raw.set(id, []);
    server.emit('connection', new Tap(sock, id));
    return id;
  };
  if (!tlsFiles) return net.createServer(accept);
  const listener = tls.createServer({
    cert: fs.readFileSync(tlsFiles.cert), key: fs.readFileSync(tlsFiles.key), ALPNProtocols: ['http/1.1'],
    ...(tlsFiles.clientCa ? { ca: fs.readFileSync(tlsFiles.clientCa), requestCert: true, rejectUnauthorized: true } : {}),
  }, (ts) => {
    const id = accept(ts);
    const peer = ts.getPeerCertificate();
    log.push({ kind: 'tls', origin: og.kind, socket: id, resumed: ts.isSessionReused(), servername: ts.servername || null, alpn: ts.alpnProtocol || null, protocol: ts.getProtocol(), clientCert: peer && peer.subject ? peer.subject.CN : null });
  });
  listener.on('tlsClientError', (e) => log.push({ kind: 'tls-error', origin: og.kind, message: e.message }));
  return listener;
}
const mainOrigin = { kind: 'main', listen: opts.listen };
const listeners = [[mainOrigin, makeListener(mainOrigin, makeServer(mainOrigin), opts.tlsCert ? { cert: opts.tlsCert, key: opts.tlsKey, clientCa: opts.tlsClientCa } : null)]];
for (const og of opts.origins) listeners.push([og, makeListener(og, makeServer(og), og.tls ? { cert: og.cert, key: og.key } : null)]);

// ---- control ----
const control = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && url.pathname === '/log') { send(res, 200, log); return; }
    if (req.method === 'GET' && url.pathname === '/raw') { send(res, 200, Object.fromEntries([...raw].map(([k, v]) => [k, Buffer.concat(v).toString('base64')]))); return; }
    if (req.method === 'POST' && url.pathname === '/reset') { reset(); send(res, 200, {}); return; }
    if (req.method === 'POST' && url.pathname === '/clear-log') { log = []; raw = new Map([...raw].map(([k]) => [k, []])); send(res, 200, {}); return; }
    if (req.method === 'POST' && url.pathname === '/seed') {
      const s = JSON.parse(Buffer.concat(chunks).toString() || '{}');
      const app = state[s.appId];
      if (!app) { send(res, 404, { error: 'no such app' }); return; }
      for (const [uid, u] of Object.entries(s.users || {})) upsertUser(app, uid, u);
      for (const [cid, c] of Object.entries(s.conversations || {})) {
        const conv = upsertConv(app, cid, c);
        for (const [uid, p] of Object.entries(c.participants || {})) conv.participants.set(uid, { access: p.access || 'ReadWrite', notify: p.notify ?? true, joinedAt: now() });
      }
      send(res, 200, {}); return;
    }
    if (req.method === 'GET' && url.pathname === '/state') {
      const app = state[url.searchParams.get('appId')];
      if (!app) { send(res, 404, {}); return; }
      send(res, 200, { users: Object.fromEntries(app.users), conversations: Object.fromEntries([...app.conversations].map(([k, c]) => [k, { ...c, participants: Object.fromEntries(c.participants) }])) });
      return;
    }
    send(res, 404, {});
  });
});

// The control port listens last: a harness waiting for it finds every listener up.
const [ch, cp] = hostPort(opts.control);
Promise.all(listeners.map(([og, l]) => new Promise((resolve, reject) => {
  const [h, p] = hostPort(og.listen);
  l.once('error', reject);
  l.listen(p, h, resolve);
}))).then(() => control.listen(cp, ch, () => console.error(`backend: listening on ${opts.listen}${opts.origins.map((og) => `, ${og.kind} origin on ${og.listen}${og.tls ? ' (tls)' : ''}${og.host ? ` for ${og.host}` : ''}`).join('')}, control on ${opts.control}, apps ${Object.keys(opts.apps).join(',')}`)),
(e) => { console.error(`backend: ${e.message}`); process.exit(1); });
process.on('SIGTERM', () => process.exit(0));
