// upgate's operator page. It renders the state that /ui/stream sends as
// Server-Sent Events ("snapshot", the whole state whenever it changed) and
// posts kicks with the page's CSRF token. No framework and no build step:
// the DOM is built with createElement and textContent only, never
// innerHTML, so no field a client chose (a path, a user name) becomes
// markup.
'use strict';
(() => {
  const csrf = document.querySelector('meta[name="upgate-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  const NS = 1e6; // nanoseconds per millisecond
  let state = null;
  let skew = 0; // the server's clock minus ours, in ms
  const now = () => Date.now() + skew;

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function setText(e, t) {
    if (e.textContent !== t) e.textContent = t;
  }
  function setTitle(e, t) {
    if (e.title !== t) e.title = t;
  }

  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do {
      n /= 1024;
      i++;
    } while (n >= 1024 && i < units.length - 1);
    return n.toFixed(n < 10 ? 1 : 0) + ' ' + units[i];
  }
  // fmtDur shows an age or idle time (ms): 0s, 42s, 4m 05s, 2h 03m, 3d 04h.
  function fmtDur(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const pad = (n) => String(n).padStart(2, '0');
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s / 60) % 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + pad(Math.floor(s / 3600) % 24) + 'h';
  }
  // fmtNs shows a short duration (ns) to two or three digits: 850µs, 4.2ms, 37ms, 1.25s.
  function fmtNs(ns) {
    const ms = ns / NS;
    if (ms < 1) return Math.round(ns / 1000) + 'µs';
    if (ms < 10) return ms.toFixed(1) + 'ms';
    if (ms < 1000) return Math.round(ms) + 'ms';
    if (ms < 60000) return (ms / 1000).toFixed(2) + 's';
    return fmtDur(ms);
  }
  // fmtSetting shows a socket setting (ns) as the config spells it: 30s, 1m.
  function fmtSetting(ns) {
    const s = ns / 1e9;
    if (s >= 60 && s % 60 === 0) return s / 60 + 'm';
    return s + 's';
  }
  function clock(t) {
    return new Date(t).toLocaleTimeString([], { hour12: false });
  }
  function hostOf(remote) {
    return remote.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  }
  function flash(text, bad) {
    const f = $('flash');
    f.textContent = text;
    f.dataset.bad = bad ? 'yes' : 'no';
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { f.textContent = ''; }, 5000);
  }

  // Sessions: rows are kept by key and updated in place, so a kick
  // button is never replaced under the pointer.
  const rows = new Map();

  function keepalive(s) {
    const o = s.socket;
    let setting = '-';
    if (o) {
      setting = o.keepalive
        ? fmtSetting(o.keepalive_idle) + '/' + fmtSetting(o.keepalive_interval) + '×' + o.keepalive_count
        : 'off';
      setting += ' · ut ' + fmtSetting(o.user_timeout);
    }
    const t = s.tcp;
    if (!t) return { setting, state: '', level: 'none', title: '' };
    let st = 'ok';
    let level = 'ok';
    if (t.probes > 0) {
      st = t.probes + ' probe' + (t.probes > 1 ? 's' : '') + ' unanswered';
      level = 'warn';
    } else if (t.unacked > 0 && t.last_ack_recv >= 5000 * NS) {
      st = t.unacked + ' unacked, no ACK for ' + fmtDur(t.last_ack_recv / NS);
      level = 'warn';
    } else if (t.state !== 'established') {
      st = t.state;
      level = 'warn';
    }
    const title = 'TCP ' + t.state + ', rtt ' + fmtNs(t.rtt) + ', last data received ' + fmtDur(t.last_recv / NS) +
      ' ago, ' + t.unacked + ' unacked, ' + t.retransmits + ' retransmits, ' + t.probes + ' keepalive probes unanswered';
    return { setting, state: st, level, title };
  }

  function filesText(s) {
    const files = s.files || [];
    const parts = files.slice(0, 3).map((f) =>
      (f.direction === 'upload' ? '↑ ' : '↓ ') + f.path + ' ' + fmtBytes(f.bytes) + ' · ' + fmtDur(now() - Date.parse(f.start)));
    if (files.length > 3) parts.push('+' + (files.length - 3) + ' more');
    return parts;
  }

  function newSessionRow(s) {
    const cells = {};
    const tr = el('tr');
    for (const name of ['id', 'user', 'proto', 'client', 'age', 'idle', 'ka', 'op', 'in', 'out', 'files', 'act']) {
      cells[name] = el('td', { class: 'c-' + name });
      tr.append(cells[name]);
    }
    for (const n of ['age', 'idle', 'in', 'out']) cells[n].classList.add('num');
    cells.kaSetting = el('span', { class: 'setting' });
    cells.kaState = el('span', { class: 'badge' });
    cells.ka.append(cells.kaSetting, ' ', cells.kaState);
    if (!s.parent) {
      const b = el('button', { type: 'button', class: 'kick', text: 'Kick' });
      b.addEventListener('click', () => kick(tr.dataset.session, b));
      cells.act.append(b);
    }
    tr.cells_ = cells;
    tr.dataset.session = s.id;
    return tr;
  }

  function updateSessionRow(tr, s) {
    const c = tr.cells_;
    tr.session_ = s;
    tr.classList.toggle('data', !!s.parent);
    tr.dataset.user = s.user || '';
    tr.dataset.protocol = s.protocol;
    tr.dataset.bytesIn = s.bytes_in;
    tr.dataset.bytesOut = s.bytes_out;
    setText(c.id, s.parent ? s.parent + '/' + s.id : s.id);
    setText(c.user, s.user || '–');
    setText(c.proto, s.protocol);
    setText(c.client, s.remote);
    const ka = keepalive(s);
    setText(c.kaSetting, ka.setting);
    setText(c.kaState, ka.state);
    c.kaState.dataset.level = ka.level;
    setTitle(c.ka, ka.title);
    setText(c.op, s.op || '–');
    setTitle(c.op, s.op || '');
    setText(c.in, fmtBytes(s.bytes_in));
    setText(c.out, fmtBytes(s.bytes_out));
    const files = filesText(s);
    if (c.files.dataset.text !== files.join('\n')) {
      c.files.dataset.text = files.join('\n');
      c.files.replaceChildren(...files.map((f) => el('div', { class: 'file', text: f, title: f })));
    }
    updateTimes(tr);
  }

  function updateTimes(tr) {
    const s = tr.session_;
    if (!s) return;
    setText(tr.cells_.age, fmtDur(now() - Date.parse(s.start)));
    setText(tr.cells_.idle, fmtDur(now() - Date.parse(s.last_activity)));
  }

  function groupRow(key) {
    const td = el('td', { colspan: '12' });
    const tr = el('tr', { class: 'group' }, td);
    tr.cells_ = { td };
    return tr;
  }

  function renderSessions() {
    const sessions = state.sessions || [];
    const want = []; // [key, make, update]
    const sessionItem = (s) => ['s:' + s.id, () => newSessionRow(s), (tr) => updateSessionRow(tr, s)];
    if ($('group-by-address').checked) {
      const groups = new Map();
      for (const s of sessions) {
        const h = hostOf(s.remote);
        if (!groups.has(h)) groups.set(h, []);
        groups.get(h).push(s);
      }
      const ordered = [...groups.entries()].sort((a, b) =>
        b[1].filter((s) => !s.parent).length - a[1].filter((s) => !s.parent).length || a[0].localeCompare(b[0]));
      for (const [host, list] of ordered) {
        const control = list.filter((s) => !s.parent);
        const users = [...new Set(control.map((s) => s.user || '–'))].sort();
        const oldest = Math.min(...list.map((s) => Date.parse(s.start)));
        const idlest = Math.min(...list.map((s) => Date.parse(s.last_activity)));
        const sum = (k) => control.reduce((n, s) => n + s[k], 0);
        want.push(['g:' + host, () => groupRow(host), (tr) => {
          tr.dataset.host = host;
          tr.dataset.count = control.length;
          tr.group_ = { host, count: control.length, users, oldest, idlest, in: sum('bytes_in'), out: sum('bytes_out') };
          updateGroupRow(tr);
        }]);
        for (const s of list) want.push(sessionItem(s));
      }
    } else {
      for (const s of sessions) want.push(sessionItem(s));
    }
    const tbody = $('sessions').tBodies[0];
    const seen = new Set();
    want.forEach(([key, make, update], i) => {
      let tr = rows.get(key);
      if (!tr) {
        tr = make();
        rows.set(key, tr);
      }
      update(tr);
      seen.add(key);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const [key, tr] of rows) {
      if (!seen.has(key)) {
        tr.remove();
        rows.delete(key);
      }
    }
    $('sessions-empty').hidden = sessions.length > 0;
  }

  function updateGroupRow(tr) {
    const g = tr.group_;
    setText(tr.cells_.td, g.host + ' — ' + g.count + ' session' + (g.count === 1 ? '' : 's') + ' (' + g.users.join(', ') +
      ') · oldest ' + fmtDur(now() - g.oldest) + ' · idle ' + fmtDur(now() - g.idlest) +
      ' · in ' + fmtBytes(g.in) + ' · out ' + fmtBytes(g.out));
  }

  async function kick(id, button) {
    button.disabled = true;
    button.textContent = 'Kicking…';
    try {
      const r = await fetch('/ui/sessions/' + encodeURIComponent(id) + '/kick', {
        method: 'POST', headers: { 'X-Upgate-Csrf': csrf }, credentials: 'same-origin',
      });
      if (r.status === 401) {
        location.reload();
        return;
      }
      if (r.status !== 204 && r.status !== 404) throw new Error(r.status + ' ' + (await r.text()).trim());
      flash('Session ' + id + ' kicked.');
    } catch (e) {
      flash('Kick failed: ' + e.message, true);
      button.disabled = false;
      button.textContent = 'Kick';
    }
  }

  function renderAgents() {
    const tbody = $('agents').tBodies[0];
    tbody.replaceChildren(...(state.agents || []).map((a) => {
      let st = a.up ? 'up' : 'down';
      let level = a.up ? 'ok' : 'bad';
      const checked = Date.parse(a.checked) > 0;
      if (a.per_user) {
        st = 'per user';
        level = 'none';
      } else if (!checked) {
        st = 'not checked yet';
        level = 'none';
      }
      const num = (n) => (n < 0 ? '–' : String(n));
      return el('tr', { 'data-agent': a.name },
        el('td', {}, a.name, a.embedded ? el('span', { class: 'kind', text: ' embedded' }) : null),
        el('td', { class: 'mono', text: a.address }),
        el('td', {}, el('span', { class: 'badge', 'data-level': level, text: st })),
        el('td', { class: 'num', text: checked ? fmtNs(a.rtt) : '–' }),
        el('td', { class: 'num', text: num(a.open_files) }),
        el('td', { class: 'num', text: num(a.uploads) }),
        el('td', { class: 'num', text: checked ? fmtDur(now() - Date.parse(a.checked)) + ' ago' : '–' }),
        el('td', { class: 'error', text: a.error || '', title: a.error || '' }));
    }));
  }

  // chart draws a save latency series, one column per slot of the
  // window (oldest left): a bar from p50 to p99, a dot at each, lines
  // joining neighbouring slots; a linear scale from 0 to the highest p99.
  // Slots without saves leave a gap; ticks on the axis mark the minutes.
  function chart(series, slotNs) {
    const W = 180, H = 40, P = 4;
    const top = Math.max(NS, ...series.map((p) => p.p99));
    const x = (i) => P + (i * (W - 2 * P)) / Math.max(series.length - 1, 1);
    const y = (v) => H - P - (v / top) * (H - 2 * P);
    const g = svg('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img',
      'aria-label': 'save latency, p50 and p99 per ' + fmtSetting(slotNs) });
    g.append(svg('line', { x1: P, x2: W - P, y1: H - P, y2: H - P, class: 'axis' }));
    const perMinute = Math.round(60e9 / slotNs);
    series.forEach((p, i) => {
      if ((series.length - 1 - i) % perMinute === 0) {
        g.append(svg('line', { x1: x(i), x2: x(i), y1: H - P, y2: H - P + 3, class: 'axis' }));
      }
    });
    for (const key of ['p99', 'p50']) {
      let d = '';
      let pen = 'M';
      series.forEach((p, i) => {
        if (!p.count) {
          pen = 'M';
          return;
        }
        d += pen + x(i).toFixed(1) + ' ' + y(p[key]).toFixed(1) + ' ';
        pen = 'L';
      });
      if (d) g.append(svg('path', { d, class: key }));
    }
    series.forEach((p, i) => {
      if (!p.count) return;
      const tip = svg('title', {}, clock(Date.parse(p.start)) + ': ' + p.count + ' save' + (p.count > 1 ? 's' : '') +
        ', p50 ' + fmtNs(p.p50) + ', p99 ' + fmtNs(p.p99));
      g.append(svg('g', { class: 'slot' }, tip,
        svg('line', { x1: x(i), x2: x(i), y1: y(p.p50).toFixed(1), y2: y(p.p99).toFixed(1), class: 'range' }),
        svg('circle', { cx: x(i).toFixed(1), cy: y(p.p99).toFixed(1), r: 2.2, class: 'p99' }),
        svg('circle', { cx: x(i).toFixed(1), cy: y(p.p50).toFixed(1), r: 2.2, class: 'p50' })));
    });
    return g;
  }

  function renderLatency() {
    const list = state.latency || [];
    $('latency').tBodies[0].replaceChildren(...list.map((l) =>
      el('tr', { 'data-user': l.user, 'data-protocol': l.protocol },
        el('td', { text: l.user }),
        el('td', { text: l.protocol }),
        el('td', { class: 'num', text: String(l.count) }),
        el('td', { class: 'num', text: fmtNs(l.p50) }),
        el('td', { class: 'num', text: fmtNs(l.p99) }),
        el('td', { class: 'num', text: fmtNs(l.max) }),
        el('td', {}, chart(l.series || [], state.slot)))));
    $('latency-empty').hidden = list.length > 0;
  }

  function renderTransfers() {
    const list = state.transfers || [];
    $('transfers').tBodies[0].replaceChildren(...list.map((e) => {
      const t = e.data;
      return el('tr', { 'data-result': t.result },
        el('td', { text: clock(Date.parse(e.time)) }),
        el('td', { text: e.user || '–' }),
        el('td', { text: t.protocol }),
        el('td', { text: t.direction === 'upload' ? '↑' : '↓', title: t.direction }),
        el('td', { class: 'path', text: t.path, title: t.path }),
        el('td', { class: 'num', text: fmtBytes(t.bytes) }),
        el('td', { class: 'num', text: fmtNs(t.duration) }),
        el('td', {}, el('span', { class: 'badge', 'data-level': { committed: 'ok', completed: 'ok', aborted: 'warn' }[t.result] || 'bad',
          text: t.result, title: t.error || '' })));
    }));
    $('transfers-empty').hidden = list.length > 0;
  }

  function renderEvents() {
    const list = state.events || [];
    $('events').tBodies[0].replaceChildren(...list.map((e) =>
      el('tr', { 'data-kind': e.kind },
        el('td', { text: clock(Date.parse(e.time)) }),
        el('td', {}, el('span', { class: 'badge', 'data-level': 'none', text: e.kind })),
        el('td', { text: e.user || '–' }),
        el('td', { class: 'summary-cell', text: e.summary, title: e.summary }))));
    $('events-empty').hidden = list.length > 0;
  }

  function renderSummary() {
    const control = (state.sessions || []).filter((s) => !s.parent);
    const users = new Set(control.filter((s) => s.user).map((s) => s.user));
    const hosts = new Set(control.map((s) => hostOf(s.remote)));
    const agents = state.agents || [];
    const checked = agents.filter((a) => !a.per_user);
    const saves = (state.latency || []).reduce((n, l) => n + l.count, 0);
    setText($('summary'), control.length + ' session' + (control.length === 1 ? '' : 's') + ' · ' + users.size + ' user' +
      (users.size === 1 ? '' : 's') + ' · ' + hosts.size + ' address' + (hosts.size === 1 ? '' : 'es') + ' · agents ' +
      checked.filter((a) => a.up).length + '/' + checked.length + ' up · ' + saves + ' save' + (saves === 1 ? '' : 's') +
      ' in the last ' + fmtSetting(state.window));
  }

  function render() {
    if (!state) return;
    renderSummary();
    renderSessions();
    renderAgents();
    renderLatency();
    renderTransfers();
    renderEvents();
  }

  function tick() {
    for (const tr of rows.values()) {
      if (tr.session_) updateTimes(tr);
      else if (tr.group_) updateGroupRow(tr);
    }
  }

  const live = $('live');
  function setLive(st, text) {
    live.dataset.state = st;
    setText(live, text);
  }
  const es = new EventSource('/ui/stream');
  es.addEventListener('snapshot', (ev) => {
    const m = JSON.parse(ev.data);
    skew = Date.parse(m.now) - Date.now();
    state = m.state;
    render();
    setLive('live', 'live');
  });
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
      // Refused (logged out, the cookie expired, too many streams):
      // reloading shows the login form or tries again.
      setLive('down', 'disconnected');
      setTimeout(() => location.reload(), 5000);
    } else {
      setLive('down', 'reconnecting…');
    }
  });
  $('group-by-address').addEventListener('change', render);
  setInterval(tick, 1000);
})();
