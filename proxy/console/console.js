// syncgate admin console (issue #21). No framework, no network but this admin listener.
// Every value from the wire goes into the page as text (textContent, setAttribute), never as
// markup. The admin token lives in this tab's sessionStorage only.
'use strict';
(function () {
  var KEY = 'syncgate-admin-token';
  var VERDICTS = ['allow', 'refuse', 'would_refuse', 'exists'];
  var SWITCHES = [['user_sync', 'user sync'], ['conversation_sync', 'conversation sync'], ['mode', 'enforce mode']];
  var $ = function (id) { return document.getElementById(id); };
  var appRows = new Map(); // app id -> {tr, cells}
  var stopped = false; // the token was refused: wait for a new one
  var timer = null, ticks = 0, lastRefusals = '', lastCounts = '', lastFleet = '', downSince = 0;

  function token() { try { return sessionStorage.getItem(KEY) || ''; } catch (e) { return ''; } }
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }
  function str(v) { return v == null ? '' : typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v); }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function fmtTime(ms) {
    var d = new Date(ms);
    if (isNaN(d.getTime())) return '?';
    var t = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    var now = new Date();
    if (d.toDateString() !== now.toDateString()) t = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + t;
    return t;
  }

  // ---- messages ----
  function showError(msg) { var e = $('error'); e.textContent = msg; e.hidden = false; }
  function clearError() { var e = $('error'); e.hidden = true; e.textContent = ''; }
  function setStatus(msg) { $('status').textContent = msg; }
  function tokenState() {
    $('token-state').textContent = token() ? 'a token is set for this tab' : 'no token set (enough for a loopback admin without token_file)';
    $('forget-token').hidden = !token();
  }

  function ApiError(kind, status, msg) { this.kind = kind; this.status = status; this.message = msg; }
  function api(method, path, body) {
    var h = { Accept: 'application/json' };
    var t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    return fetch(path, { method: method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit', redirect: 'error' })
      .then(function (r) {
        return r.text().then(function (text) {
          var j = null;
          try { j = JSON.parse(text); } catch (e) { /* below */ }
          if (r.status === 401) throw new ApiError('auth', 401, 'the admin token was refused: enter it again');
          if (!r.ok) throw new ApiError('http', r.status, method + ' ' + path + ': ' + r.status + (j && j.error ? ': ' + str(j.error) : ''));
          if (j === null || typeof j !== 'object') throw new ApiError('http', r.status, method + ' ' + path + ': the answer is not JSON');
          return j;
        });
      }, function () { throw new ApiError('net', 0, "syncgate's admin listener is unreachable"); });
  }
  function failed(e) {
    if (!(e instanceof ApiError)) e = new ApiError('bug', 0, 'console error: ' + (e && e.message ? e.message : e));
    if (e.kind === 'auth') {
      stopped = true;
      showError(token() ? 'The admin token was refused: enter it again.' : 'This admin listener requires the admin token and none is set for this tab: enter it above.');
      setStatus('Paused until a token is entered.');
      var f = $('token');
      if (document.activeElement === document.body || !document.activeElement) f.focus();
    } else if (e.kind === 'net') {
      showError("syncgate's admin listener is unreachable (retrying).");
      if (!downSince) downSince = Date.now();
      setStatus('Unreachable since ' + fmtTime(downSince) + '.');
    } else showError(e.message);
    return e;
  }

  // ---- apps ----
  function switchButton(app, key, label) {
    var b = el('button', '', { type: 'button', role: 'switch', 'aria-checked': 'false', 'data-app': app, 'data-switch': key, 'aria-label': label + ' for app ' + app, 'class': 'switch' });
    b.addEventListener('click', function () { flip(b, app, key); });
    return b;
  }
  function setSwitch(b, key, value) {
    var on = key === 'mode' ? value === 'enforce' : value === 'on';
    b.setAttribute('aria-checked', on ? 'true' : 'false');
    b.setAttribute('data-value', str(value));
    b.textContent = str(value);
  }
  function flip(b, app, key) {
    if (b.getAttribute('aria-busy') === 'true') return;
    var cur = b.getAttribute('data-value');
    var next = key === 'mode' ? (cur === 'enforce' ? 'report' : 'enforce') : (cur === 'on' ? 'off' : 'on');
    var body = {};
    body[key] = next;
    b.setAttribute('aria-busy', 'true');
    api('PUT', '/apps/' + encodeURIComponent(app), body).then(function (j) {
      b.removeAttribute('aria-busy');
      clearError();
      updateApp(j);
      // with a fleet store the answer says whether the other instances got it too
      var fleet = typeof j.fleet === 'string' ? (j.fleet === 'shared' ? ' Shared with the fleet.' : ' ' + j.fleet.charAt(0).toUpperCase() + j.fleet.slice(1) + ' (this instance only; shared at the resync if still the newest).') : '';
      setStatus(app + ': ' + key.replace('_', ' ') + ' is now ' + str(j[key]) + '.' + fleet);
      return refreshApps();
    }).catch(function (e) { b.removeAttribute('aria-busy'); failed(e); });
  }
  function updateApp(a) {
    var id = str(a.id), row = appRows.get(id);
    if (!row) {
      var tr = el('tr', null, { 'data-app': id });
      var cells = {};
      tr.appendChild(el('th', id, { scope: 'row' }));
      SWITCHES.forEach(function (s) { var td = el('td'); cells[s[0]] = switchButton(id, s[0], s[1]); td.appendChild(cells[s[0]]); tr.appendChild(td); });
      ['identity', 'secret_key', 'source'].forEach(function (k) { cells[k] = el('td', null, { 'data-field': k }); tr.appendChild(cells[k]); });
      row = { tr: tr, cells: cells };
      appRows.set(id, row);
    }
    SWITCHES.forEach(function (s) { setSwitch(row.cells[s[0]], s[0], a[s[0]]); });
    row.cells.identity.textContent = str(a.identity);
    row.cells.secret_key.textContent = a.secret_key === true ? 'yes' : 'no';
    var src = a.source && typeof a.source === 'object' ? a.source : {};
    var admin = Object.keys(src).filter(function (k) { return src[k] === 'admin'; });
    row.cells.source.textContent = admin.length ? 'admin API: ' + admin.join(', ').replace(/_/g, ' ') : 'file';
    row.tr.classList.toggle('changed', admin.length > 0);
    return row;
  }
  function showApps(j) {
    var apps = Array.isArray(j.apps) ? j.apps : [];
    var seen = new Set(), body = $('apps').tBodies[0];
    apps.forEach(function (a, i) {
      var row = updateApp(a);
      seen.add(str(a.id));
      // the server's order; a row already in place is not moved (moving would drop the focus)
      if (body.rows[i] !== row.tr) body.insertBefore(row.tr, body.rows[i] || null);
    });
    appRows.forEach(function (row, id) { if (!seen.has(id)) { row.tr.remove(); appRows.delete(id); } });
    Array.prototype.slice.call(body.rows).forEach(function (r) { if (!r.hasAttribute('data-app')) r.remove(); });
    if (!apps.length) body.appendChild(el('tr')).appendChild(el('td', 'No [app:...] section in the file: every app takes the defaults.', { colspan: 7 }));
    var d = j.defaults || {};
    $('defaults').textContent = 'Apps without a section ([app:*]): user sync ' + str(d.user_sync) + ', conversation sync ' + str(d.conversation_sync) + ', mode ' + str(d.mode) + ', identity ' + str(d.identity) + ', secret key ' + (d.secret_key === true ? 'yes' : 'no') + '.';
  }
  function refreshApps() { return api('GET', '/apps').then(showApps); }

  // ---- decisions ----
  function showCounts(counts) {
    var sig = JSON.stringify(counts);
    if (sig === lastCounts) return;
    lastCounts = sig;
    var rows = new Map();
    (Array.isArray(counts) ? counts : []).forEach(function (c) {
      var k = JSON.stringify([str(c.app), str(c.op)]);
      if (!rows.has(k)) rows.set(k, { app: str(c.app), op: str(c.op), n: {} });
      var r = rows.get(k);
      r.n[str(c.verdict)] = (r.n[str(c.verdict)] || 0) + (Number(c.n) || 0);
    });
    var list = Array.from(rows.values()).sort(function (a, b) { return a.app < b.app ? -1 : a.app > b.app ? 1 : a.op < b.op ? -1 : a.op > b.op ? 1 : 0; });
    var body = document.createElement('tbody');
    list.forEach(function (r) {
      var tr = el('tr', null, { 'data-app': r.app, 'data-op': r.op });
      tr.appendChild(el('th', r.app, { scope: 'row' }));
      tr.appendChild(el('td', r.op));
      VERDICTS.forEach(function (v) { tr.appendChild(el('td', r.n[v] || 0, { 'data-verdict': v, 'class': 'num' + (r.n[v] && v !== 'allow' && v !== 'exists' ? ' hot' : '') })); });
      body.appendChild(tr);
    });
    if (!list.length) body.appendChild(el('tr')).appendChild(el('td', 'No decision yet.', { colspan: 6 }));
    var t = $('counts');
    t.replaceChild(body, t.tBodies[0]);
  }

  var SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (text != null) e.textContent = String(text);
    return e;
  }
  function showChart(perMin) {
    var v = (Array.isArray(perMin) ? perMin : []).map(function (x) { return Math.max(0, Number(x) || 0); });
    var c = $('chart'), W = 600, H = 120, top = 14, base = H - 14, n = v.length || 60;
    var max = Math.max.apply(null, v.concat([1]));
    var total = v.reduce(function (a, b) { return a + b; }, 0);
    while (c.firstChild) c.removeChild(c.firstChild);
    c.appendChild(svg('line', { x1: 0, y1: base, x2: W, y2: base, 'class': 'axis' }));
    var bw = W / n;
    v.forEach(function (x, i) {
      if (!x) return;
      var h = Math.max(2, (base - top) * x / max);
      var r = svg('rect', { x: (i * bw + 1).toFixed(1), y: (base - h).toFixed(1), width: Math.max(1, bw - 2).toFixed(1), height: h.toFixed(1), 'class': 'bar', 'data-minute': i - n + 1, 'data-n': x });
      r.appendChild(svg('title', {}, x + ' refusal' + (x === 1 ? '' : 's') + (i === n - 1 ? ' this minute' : ' ' + (n - 1 - i) + ' min ago')));
      c.appendChild(r);
    });
    c.appendChild(svg('text', { x: 2, y: H - 2, 'class': 'label' }, '-' + n + ' min'));
    c.appendChild(svg('text', { x: W - 2, y: H - 2, 'class': 'label end' }, 'now'));
    c.appendChild(svg('text', { x: 2, y: 11, 'class': 'label' }, 'max ' + max + '/min'));
    $('chart-cap').textContent = 'Refusals per minute over the last hour: ' + total + ' in all, at most ' + (total ? max : 0) + ' in one minute.';
  }

  function showFleet(f) {
    var sig = JSON.stringify(f);
    if (sig === lastFleet) return;
    lastFleet = sig;
    var sec = $('fleet-section'), dl = $('fleet');
    while (dl.firstChild) dl.removeChild(dl.firstChild);
    if (f == null) { sec.hidden = true; return; }
    sec.hidden = false;
    if (typeof f !== 'object' || Array.isArray(f)) { dl.appendChild(el('dt', 'status')); dl.appendChild(el('dd', str(f))); return; }
    Object.keys(f).forEach(function (k) { dl.appendChild(el('dt', k)); dl.appendChild(el('dd', str(f[k]))); });
  }

  function showRefusals(list) {
    list = Array.isArray(list) ? list : [];
    var sig = JSON.stringify(list);
    if (sig === lastRefusals) return;
    lastRefusals = sig;
    var body = document.createElement('tbody');
    list.forEach(function (r) {
      var report = r.mode === 'report';
      var tr = el('tr', null, { 'data-app': str(r.app), 'data-op': str(r.op), 'data-transport': str(r.transport), 'data-user': str(r.user), 'data-mode': str(r.mode) });
      if (report) tr.className = 'report';
      var td = el('td');
      td.appendChild(el('time', fmtTime(r.time), { datetime: isNaN(new Date(r.time)) ? '' : new Date(r.time).toISOString() }));
      tr.appendChild(td);
      tr.appendChild(el('td', r.app, { 'data-field': 'app' }));
      tr.appendChild(el('td', r.user, { 'data-field': 'user' }));
      tr.appendChild(el('td', r.op, { 'data-field': 'op' }));
      tr.appendChild(el('td', r.transport, { 'data-field': 'transport' }));
      tr.appendChild(el('td', [str(r.method), str(r.path)].join(' ').trim(), { 'data-field': 'call', 'class': 'mono' }));
      tr.appendChild(el('td', (report ? 'would refuse (report): ' : '') + [str(r.status), str(r.errorCode)].join(' ').trim(), { 'data-field': 'answer' }));
      tr.appendChild(el('td', r.reason, { 'data-field': 'reason' }));
      body.appendChild(tr);
    });
    var t = $('refusals');
    t.replaceChild(body, t.tBodies[0]);
    $('refusals-empty').hidden = list.length > 0;
  }

  // ---- polling: /stats and /decisions every second, /apps every 5 s ----
  function tick() {
    timer = null;
    if (stopped) return;
    var jobs = [api('GET', '/stats'), api('GET', '/decisions?limit=200')];
    if (ticks++ % 5 === 0) jobs.push(refreshApps());
    Promise.all(jobs).then(function (r) {
      showCounts(r[0].counts);
      showChart(r[0].refusals_per_minute);
      showFleet(r[0].fleet);
      showRefusals(r[1].refusals);
      clearError();
      downSince = 0;
      setStatus('Live: updated ' + fmtTime(typeof r[0].time === 'number' ? r[0].time : Date.now()) + '.');
      schedule(1000);
    }).catch(function (e) {
      e = failed(e);
      if (e.kind === 'net') ticks = 0; // reload the apps once it answers again
      if (e.kind !== 'auth') schedule(e.kind === 'net' ? 2000 : 1000);
    });
  }
  function schedule(ms) { if (!timer && !stopped) timer = setTimeout(tick, ms); }
  function restart() {
    stopped = false;
    ticks = 0;
    if (timer) { clearTimeout(timer); timer = null; }
    tick();
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('token-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = $('token'), v = f.value.trim();
      if (!v) { showError('Enter the admin token first (the contents of token_file).'); f.focus(); return; }
      try { sessionStorage.setItem(KEY, v); } catch (e) { showError('This browser refuses sessionStorage: the token cannot be kept.'); return; }
      f.value = '';
      clearError();
      tokenState();
      setStatus('Trying the token...');
      restart();
    });
    $('forget-token').addEventListener('click', function () {
      try { sessionStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
      tokenState();
      $('token').focus();
      restart();
    });
    tokenState();
    setStatus('Connecting...');
    restart();
  });
}());
