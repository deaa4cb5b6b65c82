// A WebSocket conformance suite modelled on Autobahn|Testsuite categories 1-7 and 9, run
// through syncgate's inspecting realtime relay to the reference backend (client -> backend)
// and against a scripted backend (backend -> client). Every case ends in its answer or a
// correct close (1002 / 1003 / 1007 / 1009), never a crash, a hang or a forwarded bad frame.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import { startBackend, startSyncgate, freePort, sleep, openFds } from '../lib/harness.mjs';
import { RawWs, frame, userToken } from '../lib/rawws.mjs';

const KEY = 'sk_test_demo';
let be, sg, fds0;
before(async () => {
  be = await startBackend({ apps: { demo: KEY } });
  sg = await startSyncgate(be.port, `[app:demo]\nsecret_key = ${KEY}\n[limits]\nws_message = 1m\nws_fragments = 2000\n`);
  fds0 = openFds(sg.proc.pid);
});
after(async () => {
  await sleep(300);
  const fds1 = openFds(sg.proc.pid);
  await sg.stop();
  await be.stop();
  assert.ok(fds1 <= fds0 + 2, `descriptors leaked: ${fds0} -> ${fds1}`);
});

async function open() {
  const ws = await RawWs.open(sg.port, '/v1/demo/realtime/alice');
  ws.sendText(JSON.stringify([0, 'POST', '/session/renew', { token: userToken('demo', 'alice', KEY) }, {}]));
  assert.equal((await ws.json(0))[1], 200);
  return ws;
}
const call = (seq, pad = '') => JSON.stringify([seq, 'GET', '/ping', pad ? { pad } : {}, {}]);
async function answered(ws, seq) { const r = await ws.json(seq, 5000); assert.ok(r, `answer to ${seq}`); assert.equal(r[1], 200); }
async function closedWith(ws, code) { const c = await ws.closeFrame(5000); assert.ok(c, 'close frame'); assert.equal(c.code, code, c.reason); assert.ok(await ws.waitClosed()); }

// 1.x framing: text messages of many sizes, in 7-, 16- and 64-bit length encodings
for (const size of [0, 125, 126, 127, 128, 65535, 65536, 65537, 500000]) {
  test(`1.1 text message with a ${size} byte pad`, async () => {
    const ws = await open();
    ws.sendText(call(1, 'p'.repeat(size)));
    await answered(ws, 1);
    ws.destroy();
  });
}
test('1.2 binary message on the realtime socket: close 1003', async () => { const ws = await open(); ws.send(frame(2, call(1))); await closedWith(ws, 1003); });

// 2.x pings and pongs
test('2.1 pings with 0 and 125 byte payloads are answered with the same payload', async () => {
  const ws = await open();
  for (const n of [0, 125]) {
    ws.send(frame(9, 'x'.repeat(n)));
    const p = await ws.next((f) => f.opcode === 10);
    assert.equal(p.payload.length, n);
  }
  ws.destroy();
});
test('2.2 a ping of 126 bytes: close 1002', async () => { const ws = await open(); ws.send(frame(9, 'x'.repeat(126))); await closedWith(ws, 1002); });
test('2.3 an unsolicited pong is harmless', async () => { const ws = await open(); ws.send(frame(10, 'hi')); ws.sendText(call(1)); await answered(ws, 1); ws.destroy(); });
test('2.4 ten pings in a row get ten pongs', async () => {
  const ws = await open();
  for (let i = 0; i < 10; i++) ws.send(frame(9, `p${i}`));
  for (let i = 0; i < 10; i++) assert.equal((await ws.next((f) => f.opcode === 10)).text, `p${i}`);
  ws.destroy();
});

// 3.x reserved bits, 4.x reserved opcodes
for (const rsv of [1, 2, 3, 4, 5, 6, 7]) test(`3.${rsv} RSV=${rsv}: close 1002`, async () => { const ws = await open(); ws.send(frame(1, call(1), { rsv })); await closedWith(ws, 1002); });
for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) test(`4.x opcode ${op}: close 1002`, async () => { const ws = await open(); ws.send(frame(op, 'x')); await closedWith(ws, 1002); });

// 5.x fragmentation
test('5.1 a text message in 2..50 fragments with pings between is answered', async () => {
  const ws = await open();
  const text = Buffer.from(call(1, 'frag'.repeat(20)));
  for (const n of [2, 7, 50]) {
    const parts = [];
    const step = Math.ceil(text.length / n);
    for (let i = 0; i * step < text.length; i++) {
      const last = (i + 1) * step >= text.length;
      parts.push(frame(i === 0 ? 1 : 0, text.subarray(i * step, (i + 1) * step), { fin: last }));
      if (!last) parts.push(frame(9, `f${i}`));
    }
    ws.send(Buffer.concat(parts));
    await answered(ws, 1);
  }
  ws.destroy();
});
test('5.2 a continuation with nothing to continue: close 1002', async () => { const ws = await open(); ws.send(frame(0, call(1))); await closedWith(ws, 1002); });
test('5.3 a new text frame inside a fragmented message: close 1002', async () => { const ws = await open(); ws.send(Buffer.concat([frame(1, '[1,', { fin: false }), frame(1, call(2))])); await closedWith(ws, 1002); });
test('5.4 a fragmented close: close 1002', async () => { const ws = await open(); ws.send(frame(8, Buffer.from([3, 232]), { fin: false })); await closedWith(ws, 1002); });
test('5.5 one-byte fragments of a whole call are answered', async () => {
  const ws = await open();
  const text = Buffer.from(call(1));
  ws.send(Buffer.concat([...text].map((b, i) => frame(i === 0 ? 1 : 0, Buffer.from([b]), { fin: i === text.length - 1 }))));
  await answered(ws, 1);
  ws.destroy();
});

// 6.x UTF-8
test('6.1 valid multi-byte UTF-8, whole and split across fragments, is answered', async () => {
  const ws = await open();
  const text = Buffer.from(call(1, 'κόσμε 😀 \u20ac'));
  ws.sendText(text);
  await answered(ws, 1);
  const i = text.indexOf(0xf0) + 2; // inside the 4-byte emoji
  ws.send(Buffer.concat([frame(1, text.subarray(0, i), { fin: false }), frame(0, text.subarray(i))]));
  await answered(ws, 1);
  ws.destroy();
});
for (const [name, bytes] of [['overlong', [0xc0, 0xaf]], ['surrogate', [0xed, 0xa0, 0x80]], ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]], ['lone continuation', [0x80]], ['truncated', [0xe2, 0x82]]]) {
  test(`6.2 invalid UTF-8 (${name}): close 1007`, async () => {
    const ws = await open();
    ws.send(frame(1, Buffer.concat([Buffer.from('[1,"GET","/ping",{"x":"'), Buffer.from(bytes), Buffer.from('"},{}]')])));
    await closedWith(ws, 1007);
  });
}

// 7.x close handling
for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]) {
  test(`7.1 close ${code} is relayed and answered`, async () => {
    const ws = await open();
    ws.send(frame(8, Buffer.from([code >> 8, code & 255])));
    const c = await ws.closeFrame(5000);
    assert.ok(c);
    assert.ok(await ws.waitClosed());
  });
}
for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
  test(`7.2 close with invalid code ${code}: close 1002`, async () => { const ws = await open(); ws.send(frame(8, Buffer.from([code >> 8, code & 255]))); await closedWith(ws, 1002); });
}
test('7.3 close with a 1-byte payload: 1002; with an invalid UTF-8 reason: 1007; empty: relayed', async () => {
  let ws = await open(); ws.send(frame(8, Buffer.from([3]))); await closedWith(ws, 1002);
  ws = await open(); ws.send(frame(8, Buffer.from([3, 232, 0xff]))); await closedWith(ws, 1007);
  ws = await open(); ws.send(frame(8, Buffer.alloc(0))); assert.ok(await ws.closeFrame(5000)); assert.ok(await ws.waitClosed());
});
test('7.4 nothing after a close is forwarded', async () => {
  await be.clearLog();
  const ws = await open();
  ws.send(Buffer.concat([frame(8, Buffer.from([3, 232])), frame(1, '[9,"PUT","/users/alice",{},{}]')]));
  await ws.closeFrame(5000);
  await sleep(200);
  const got = (await be.log()).filter((e) => e.kind === 'ws').map((e) => Buffer.from(e.raw, 'base64').toString());
  assert.ok(!got.some((t) => t.includes('"PUT"')));
  ws.destroy();
});

// 9.x limits: big messages and many fragments
for (const size of [64 * 1024, 256 * 1024, 1000 * 1000]) {
  test(`9.1 a ${size} byte message, whole and in 4 KiB fragments, is answered`, async () => {
    const ws = await open();
    const text = Buffer.from(call(1, 'L'.repeat(size - 40)));
    ws.send(frame(1, text));
    await answered(ws, 1);
    const parts = [];
    for (let o = 0; o < text.length; o += 4096) parts.push(frame(o === 0 ? 1 : 0, text.subarray(o, o + 4096), { fin: o + 4096 >= text.length }));
    ws.send(Buffer.concat(parts));
    await answered(ws, 1);
    ws.destroy();
  });
}
test('9.2 past ws_message: close 1009; past ws_fragments: close 1009', async () => {
  let ws = await open(); ws.send(frame(1, call(1, 'X'.repeat(1024 * 1024)))); await closedWith(ws, 1009);
  ws = await open();
  ws.send(Buffer.concat([frame(1, '[', { fin: false }), ...Array.from({ length: 2100 }, () => frame(0, ' ', { fin: false }))]));
  await closedWith(ws, 1009);
});

// backend -> client: a scripted backend that fragments its messages and pings
test('backend direction: syncgate answers never land inside a fragmented backend message', async () => {
  const port = await freePort();
  const srv = net.createServer((s) => {
    let head = '';
    s.on('data', (d) => {
      if (!head.includes('\r\n\r\n')) {
        head += d.toString('latin1');
        const m = /Sec-WebSocket-Key: (.*)\r\n/i.exec(head);
        if (!head.includes('\r\n\r\n') || !m) return;
        const acc = crypto.createHash('sha1').update(m[1] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acc}\r\n\r\n`);
        // a push in three fragments, 300 ms apart, with a ping in the middle
        s.write(frame(1, '[1,"PUBLISH",{"type":', { fin: false, mask: false }));
        setTimeout(() => s.write(Buffer.concat([frame(9, 'mid', { mask: false }), frame(0, '"user.edited",', { fin: false, mask: false })])), 300);
        setTimeout(() => s.write(frame(0, '"userId":"x"}]', { mask: false })), 600);
      }
    });
    s.on('error', () => {});
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  const sg2 = await startSyncgate(port, `[app:demo]\nuser_sync = off\n`);
  try {
    const ws = await RawWs.open(sg2.port, '/v1/demo/realtime/alice');
    await sleep(100); // inside the backend's fragmented message
    ws.sendText('[5,"PUT","/users/alice",{},{}]');
    await sleep(900);
    const order = ws.frames.map((f) => (f.opcode === 1 && f.text.startsWith('[5,') ? 'answer' : f.opcode === 1 ? 'start' : f.opcode === 0 ? (f.fin ? 'end' : 'cont') : f.opcode === 9 ? 'ping' : `op${f.opcode}`));
    assert.deepEqual(order, ['start', 'ping', 'cont', 'end', 'answer']);
    ws.destroy();
  } finally {
    await sg2.stop();
    await new Promise((r) => srv.close(r));
  }
});
