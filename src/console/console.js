// 城市脉搏调度台: the dispatcher's live view of alerts, served by citypulse at `/`.
//
// Loads the board (/api/alerts), then follows the feed (/alerts/stream, server-sent events)
// from the board's seq on, so nothing is missed or shown twice; polls /api/overview for the
// counters. All data reaches the page through textContent and attributes, never as markup.
'use strict';

const SEVERITY = { critical: '严重', warning: '警告', info: '提示' };
const SEVERITY_RANK = { critical: 3, warning: 2, info: 1 };
const KIND = {
  incident: '突发事件',
  category_burst: '类别激增',
  term_burst: '热词激增',
  emotion_surge: '情绪激增',
};
const STATUS = { firing: '告警中', updated: '持续更新', resolved: '已解除' };
const CHANNEL = { weibo: '微博', wechat: '微信', '12345': '12345热线', '110': '110接警' };
const HISTORY_SHOWN = 50;
const HISTORY_POINTS = 64;
const OVERVIEW_EVERY_MS = 5000;

const threads = new Map(); // alert_id -> board entry (alert fields + ack + history)
let selected = null;
let seq = 0;
let source = null;
const rateSamples = []; // [{t, events}] for the per-minute rate

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// The time part of an RFC 3339 timestamp, in the offset it was written with (China time).
function clockOf(at) {
  return typeof at === 'string' && at.length >= 19 ? at.slice(11, 19) : '';
}
function dateTimeOf(at) {
  return typeof at === 'string' && at.length >= 19 ? at.slice(5, 10) + ' ' + at.slice(11, 19) : '';
}

function place(thread) {
  return thread.district || '全市';
}

function title(thread) {
  const what = thread.category || (thread.terms && thread.terms[0]) || KIND[thread.kind] || '';
  return place(thread) + ' · ' + what;
}

function channelsText(thread) {
  return (thread.channels || []).map((c) => CHANNEL[c] || c).join('、');
}

async function loadBoard() {
  const response = await fetch('/api/alerts', { credentials: 'same-origin', cache: 'no-store' });
  if (response.status === 401) {
    window.location.assign('/login');
    return false;
  }
  if (!response.ok) throw new Error('HTTP ' + response.status);
  const board = await response.json();
  threads.clear();
  for (const entry of [...board.recent, ...board.active]) threads.set(entry.alert_id, entry);
  seq = board.seq;
  render();
  return true;
}

function connect() {
  if (source) source.close();
  source = new EventSource('/alerts/stream?after=' + encodeURIComponent(seq));
  source.addEventListener('open', () => setConnection(true));
  source.addEventListener('alert', (event) => {
    seq = Math.max(seq, Number(event.lastEventId) || seq);
    onAlert(JSON.parse(event.data));
  });
  source.addEventListener('ack', (event) => {
    seq = Math.max(seq, Number(event.lastEventId) || seq);
    onAck(JSON.parse(event.data));
  });
  source.addEventListener('error', () => {
    setConnection(false);
    // The browser retries by itself (with Last-Event-ID) unless the stream was refused, e.g.
    // because the session expired: then start over from the board, which also re-checks login.
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(start, 5000);
    }
  });
}

function setConnection(online) {
  const node = $('connection');
  node.textContent = online ? '实时推送已连接' : '推送断开，重连中…';
  node.className = 'connection ' + (online ? 'online' : 'offline');
}

function onAlert(alert) {
  const previous = threads.get(alert.alert_id);
  const entry = Object.assign({}, previous || {}, alert);
  entry.history = previous ? previous.history.slice() : [];
  if (entry.history.length >= HISTORY_POINTS) entry.history.splice(1, 1);
  entry.history.push({ at: alert.at, count: alert.count });
  // Same rule as the server: a thread that fires again after resolving needs a new ack.
  if (!previous || (previous.status === 'resolved' && alert.status !== 'resolved')) {
    entry.acknowledged_by = null;
    entry.acknowledged_at = null;
    entry.ack_note = null;
  }
  entry.fresh = !previous || previous.status === 'resolved';
  threads.set(alert.alert_id, entry);
  render();
}

function onAck(ack) {
  const entry = threads.get(ack.alert_id);
  if (!entry) return;
  entry.acknowledged_by = ack.by;
  entry.acknowledged_at = ack.at;
  entry.ack_note = ack.note || null;
  render();
}

function sorted() {
  const active = [];
  const resolved = [];
  for (const thread of threads.values()) {
    (thread.status === 'resolved' ? resolved : active).push(thread);
  }
  active.sort(
    (a, b) => (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0) || (b.at > a.at ? 1 : b.at < a.at ? -1 : 0),
  );
  resolved.sort((a, b) => (b.at > a.at ? 1 : b.at < a.at ? -1 : 0));
  return { active, resolved: resolved.slice(0, HISTORY_SHOWN) };
}

function alertItem(thread) {
  const item = el('li', 'alert-item sev-' + thread.severity);
  if (thread.fresh) item.classList.add('fresh');
  if (thread.alert_id === selected) item.classList.add('selected');
  item.dataset.alertId = thread.alert_id;
  item.dataset.status = thread.status;
  item.append(
    el('span', 'badge sev-' + thread.severity, SEVERITY[thread.severity] || thread.severity),
    el('span', 'where', title(thread)),
    el('span', 'time', clockOf(thread.at)),
  );
  const meta = el('span', 'meta');
  meta.append(
    el('span', '', (KIND[thread.kind] || thread.kind) + ' · ' + thread.count + ' 条报告 · ' + channelsText(thread) + ' '),
  );
  const acked = Boolean(thread.acknowledged_by);
  meta.append(
    el('span', 'ack-tag ' + (acked ? 'done' : 'pending'), acked ? '已确认 · ' + thread.acknowledged_by : '待确认'),
  );
  item.append(meta);
  item.addEventListener('click', () => select(thread.alert_id));
  return item;
}

function render() {
  const { active, resolved } = sorted();
  $('active-list').replaceChildren(...active.map(alertItem));
  $('history-list').replaceChildren(...resolved.map(alertItem));
  $('active-count').textContent = String(active.length);
  $('history-count').textContent = String(resolved.length);
  $('active-empty').hidden = active.length > 0;
  $('history-empty').hidden = resolved.length > 0;
  $('stat-active').textContent = String(active.length);
  for (const thread of threads.values()) thread.fresh = false;
  renderDetail();
}

function select(alertId) {
  selected = alertId;
  $('ack-error').hidden = true;
  render();
}

function renderDetail() {
  const thread = selected && threads.get(selected);
  $('detail').hidden = !thread;
  $('detail-empty').hidden = Boolean(thread);
  if (!thread) return;
  const badge = $('detail-severity');
  badge.textContent = SEVERITY[thread.severity] || thread.severity;
  badge.className = 'badge sev-' + thread.severity;
  $('detail-title').textContent = title(thread);
  $('detail-status').textContent = STATUS[thread.status] || thread.status;
  $('detail-district').textContent = place(thread);
  $('detail-category').textContent = thread.category || '—';
  $('detail-kind').textContent = KIND[thread.kind] || thread.kind;
  const baseline = Number(thread.baseline || 0).toFixed(1);
  $('detail-count').textContent = thread.count + ' 条（常态约 ' + baseline + ' 条）';
  $('detail-channels').textContent = channelsText(thread) || '—';
  $('detail-first').textContent = dateTimeOf(thread.first_seen);
  $('detail-last').textContent = dateTimeOf(thread.last_seen);
  $('detail-terms').replaceChildren(...(thread.terms || []).map((t) => el('span', '', t)));
  $('detail-samples').replaceChildren(...(thread.event_ids || []).map((id) => el('li', '', id)));
  $('detail-id').textContent = thread.alert_id;
  $('detail-spark').replaceChildren(sparkline(thread.history || []));
  const ack = $('detail-ack');
  if (thread.acknowledged_by) {
    ack.textContent =
      '已确认：' + thread.acknowledged_by + ' 于 ' + dateTimeOf(thread.acknowledged_at) + (thread.ack_note ? '（' + thread.ack_note + '）' : '');
    ack.className = 'ack-state done';
    $('ack-button').textContent = '重新确认';
  } else {
    ack.textContent = '尚未确认';
    ack.className = 'ack-state pending';
    $('ack-button').textContent = '确认告警';
  }
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

// The thread's report count over event time, as a small line chart.
function sparkline(points) {
  const width = 400;
  const height = 90;
  const pad = { left: 28, right: 8, top: 8, bottom: 16 };
  const root = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-label': '事件规模变化' });
  if (points.length === 0) return root;
  const times = points.map((p) => Date.parse(p.at));
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const maxCount = Math.max(1, ...points.map((p) => p.count));
  const x = (t) => pad.left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right) : (width - pad.left - pad.right) / 2);
  const y = (c) => pad.top + (1 - c / maxCount) * (height - pad.top - pad.bottom);
  const coords = points.map((p, i) => [x(times[i]), y(p.count)]);
  const line = coords.map(([a, b]) => a.toFixed(1) + ',' + b.toFixed(1)).join(' ');
  const base = y(0).toFixed(1);
  root.append(
    svg('polygon', { class: 'area', points: coords[0][0].toFixed(1) + ',' + base + ' ' + line + ' ' + coords[coords.length - 1][0].toFixed(1) + ',' + base }),
    svg('polyline', { class: 'line', points: line }),
  );
  for (const [a, b] of coords) root.append(svg('circle', { class: 'dot', cx: a.toFixed(1), cy: b.toFixed(1), r: 2.5 }));
  const label = (text, attrs) => {
    const node = svg('text', Object.assign({ class: 'axis' }, attrs));
    node.textContent = text;
    return node;
  };
  root.append(
    label(String(maxCount), { x: 2, y: pad.top + 8 }),
    label('0', { x: 2, y: height - pad.bottom }),
    label(clockOf(points[0].at), { x: pad.left, y: height - 2 }),
    label(clockOf(points[points.length - 1].at), { x: width - pad.right, y: height - 2, 'text-anchor': 'end' }),
  );
  return root;
}

async function acknowledge(event) {
  event.preventDefault();
  const thread = selected && threads.get(selected);
  if (!thread) return;
  const button = $('ack-button');
  const error = $('ack-error');
  error.hidden = true;
  button.disabled = true;
  const by = $('ack-by').value.trim();
  const note = $('ack-note').value.trim();
  try {
    window.localStorage.setItem('citypulse.ackBy', by);
  } catch (_) {
    /* storage may be disabled; the name is only a convenience */
  }
  try {
    const response = await fetch('/api/alerts/' + encodeURIComponent(thread.alert_id) + '/ack', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ by: by || null, note: note || null }),
    });
    if (response.status === 401) {
      window.location.assign('/login');
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(answer.detail || 'HTTP ' + response.status);
    }
    // The same acknowledgement also arrives on the feed; applying it here makes the answer
    // visible at once even if the feed is reconnecting.
    onAck(answer.ack);
    $('ack-note').value = '';
  } catch (failure) {
    error.textContent = '确认失败：' + failure.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function bars(list, entries) {
  const max = Math.max(1, ...entries.map(([, n]) => n));
  list.replaceChildren(
    ...entries.map(([name, n]) => {
      const row = el('li');
      const bar = el('span', 'bar');
      const fill = el('span', 'fill');
      fill.style.width = ((n / max) * 100).toFixed(1) + '%';
      bar.append(fill);
      row.append(el('span', 'name', name), bar, el('span', 'num', n));
      row.title = name + '：' + n;
      return row;
    }),
  );
}

async function loadOverview() {
  try {
    const response = await fetch('/api/overview', { credentials: 'same-origin', cache: 'no-store' });
    if (!response.ok) return;
    const o = await response.json();
    $('stat-incidents').textContent = String(o.active_incidents);
    $('stat-events').textContent = String(o.events_in);
    $('stat-routed').textContent = String(o.routed);
    $('stat-triage').textContent = String(o.triage);
    $('stat-ignored').textContent = String(o.ignored);
    $('stat-dead').textContent = String(o.dead_letters);
    const now = Date.now();
    rateSamples.push({ t: now, events: o.events_in });
    while (rateSamples.length > 2 && now - rateSamples[1].t >= 60000) rateSamples.shift();
    const first = rateSamples[0];
    if (now - first.t >= 4000) {
      const perMinute = ((o.events_in - first.events) * 60000) / (now - first.t);
      $('stat-rate').textContent = '约 ' + Math.round(perMinute) + ' 条/分钟';
    }
    bars(
      $('department-list'),
      o.routed_by_department.filter((d) => d.count > 0).map((d) => [d.department, d.count]),
    );
    bars(
      $('triage-list'),
      Object.entries(o.triage_by_channel).map(([c, n]) => [CHANNEL[c] || c, n]),
    );
  } catch (_) {
    /* the next poll tries again */
  }
}

function tick() {
  const now = new Date();
  $('clock').textContent = now.toLocaleString('zh-CN', { hour12: false });
}

async function start() {
  try {
    if (await loadBoard()) connect();
  } catch (_) {
    setConnection(false);
    setTimeout(start, 5000);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  try {
    $('ack-by').value = window.localStorage.getItem('citypulse.ackBy') || '';
  } catch (_) {
    /* no storage: the field starts empty */
  }
  $('ack-form').addEventListener('submit', acknowledge);
  tick();
  setInterval(tick, 1000);
  loadOverview();
  setInterval(loadOverview, OVERVIEW_EVERY_MS);
  start();
});
