// The official @talkjs/core SDK (pinned in package-lock.json) in Node 20, connected with
// `host: "127.0.0.1:PORT"` (so it uses ws:// and /public_api/v1). Every WebSocket frame the
// SDK sends is recorded here, so tests can compare it with what the backend received.
import { getTalkSession, registerPolyfills } from '@talkjs/core';
import WebSocket from 'ws';
import crypto from 'node:crypto';
import { userToken } from '../lib/rawws.mjs';

export const sent = []; // {url, text}
export const received = []; // {url, text}: what the SDK got (to tell a lost frame from an SDK's choice)
export const closes = []; // {url, code, reason}: how each of the SDK's sockets ended
class RecordingWebSocket extends WebSocket {
  constructor(url, ...rest) {
    super(url, ...rest);
    this._url = url;
    this.on('message', (d) => received.push({ url, text: String(d) }));
    this.on('close', (code, reason) => closes.push({ url, code, reason: String(reason) }));
    // as in a browser, a failed connection (an upgrade answered 403, say) is an event the SDK
    // sees as a close, never a thrown error (ws throws an 'error' nobody listens to)
    this.on('error', () => {});
  }
  send(data, ...rest) { sent.push({ url: this._url, text: String(data) }); return super.send(data, ...rest); }
}
registerPolyfills({ WebSocket: RecordingWebSocket });

let n = 0;
// A fresh user id: the SDK keeps one session per (appId, userId) for the whole process.
export const uniqueUser = (prefix = 'u') => `${prefix}${process.pid}x${++n}`;

// HOST (protocol.md section 1) or APIURLS ({realtimeWsApiUrl, internalHttpApiUrl,
// restApiHttpUrl}: how an app points the SDK at wss/https on a host of its choice).
export function session({ host, apiUrls, appId, userId, key, auth = 'token' }) {
  const opts = { appId, userId };
  if (apiUrls) opts.apiUrls = apiUrls;
  else opts.host = host;
  if (auth === 'token') opts.token = userToken(appId, userId, key);
  else opts.signature = crypto.createHmac('sha256', key).update(userId).digest('hex').toUpperCase();
  return getTalkSession(opts);
}

// Resolves with the first snapshot PRED accepts from a subscribe-style API.
export function firstSnapshot(subscribe, pred = (s) => s != null, timeout = 8000) {
  return new Promise((resolve, reject) => {
    let sub = null, done = false;
    const t = setTimeout(() => { done = true; if (sub) sub.unsubscribe(); reject(new Error('no snapshot in time')); }, timeout);
    sub = subscribe((snap, ...rest) => {
      if (done || !pred(snap, ...rest)) return;
      done = true;
      clearTimeout(t);
      setTimeout(() => sub && sub.unsubscribe());
      resolve(snap);
    });
  });
}

// Runs F and reports how it settled: {ok: true, value} or {ok: false, message}.
export async function settle(f) {
  try { return { ok: true, value: await f() }; } catch (e) { return { ok: false, message: String(e && e.message ? e.message : e) }; }
}
