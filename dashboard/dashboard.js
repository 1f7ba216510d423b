// webstack dashboard, the browser side. Polls GET /api/state and GET /api/requests once a
// second, draws the topology (inline SVG), the live figures (canvas charts), the request
// stream and the events, and posts fault actions to POST /api/action with the token that
// `webstack dashboard` put in the URL's fragment (#token=HEX). No framework, no build step.
//
// The browser test (test/dashboard.mjs) relies on these hooks, keep them: data-host +
// data-health on host boxes, data-vip + data-held-by, #requests rows with data-served-by,
// data-rate-host, data-action/data-target/data-state on buttons, #load-rate, #events.

const POLL_MS = 500;   // the server samples the lab every second: half that, to show a change soon
const HISTORY_MS = 120_000;   // the charts' window
const MAX_REQUEST_ROWS = 50;
const FETCH_TIMEOUT_MS = 4000;

// The services whose loss takes a host's role down; any other service that is not up
// only degrades it. Names per webstack's s6 services (docs/operations.md).
const KEY_SERVICES = {
  lb: ['haproxy'], web: ['nginx', 'webstack-app', 'app'], db: ['mariadb'], monitor: ['prometheus'],
};
// The services shown in a box (others are summed up as "+N"), with short names.
const SHOWN_SERVICES = {
  lb: ['haproxy', 'keepalived'], web: ['nginx', 'webstack-app', 'app'],
  db: ['mariadb', 'failover-agent'], monitor: ['prometheus', 'alertmanager', 'failover-manager'],
};
// A host that is both a web and a database host has two boxes: these services belong to
// its database box, the others to its web box.
const DB_SERVICES = ['mariadb', 'failover-agent', 'mysqld-exporter'];
const SHORT_NAMES = {
  'webstack-app': 'app', 'failover-agent': 'agent', 'failover-manager': 'failover',
  prometheus: 'prom', alertmanager: 'alerts',
};
const HEALTH_COLOURS = {
  ok: '#23884f', degraded: '#c98a0c', down: '#d13b3b', paused: '#7d52c7', unknown: '#8a94a3',
  up: '#23884f',
};
const HOST_COLOURS = ['#2f6fde', '#e0701b', '#17a08a', '#b8418f', '#7a5cd6', '#6b8e23', '#c0392b'];

const $ = (sel) => document.querySelector(sel);
const token = readToken();
const samples = [];        // one per state refresh, for the charts: {t, hosts: {name: figures}, lag}
let lastState = null;
let requestsAfter = 0;     // the `next` of the last /api/requests answer
let faultsKey = '';        // which hosts/services the fault buttons were built for
let eventsKey = '';
let loadRateSet = false;   // #load-rate takes the server's rate once, then is the user's
let postInFlight = false;
let actionMessage = null;  // {text, error, until}: the answer to the last POST, for a while

// ---------------------------------------------------------------------------- helpers

// The token from "#token=HEX", kept in memory only and removed from the address bar so it
// does not end up in screenshots, bookmarks or the browser's history.
function readToken() {
  const value = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  if (value) window.history.replaceState(null, '', location.pathname + location.search);
  return value;
}

// Creates an element (HTML, or SVG when ns is given) with attributes and children; text is
// always set as text, never parsed as markup.
function make(tag, attrs = {}, children = [], ns = null) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const c of [children].flat(2)) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}
const SVG_NS = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs, children) => make(tag, attrs, children, SVG_NS);

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fmt = (v, digits = 1, scale = 1) => (isNum(v) ? (v * scale).toFixed(digits) : '–');
const arr = (v) => (Array.isArray(v) ? v : []);
const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
const clock = (ms, withMs = false) => {
  if (!isNum(ms)) return '–';
  const d = new Date(ms);
  const s = d.toLocaleTimeString('en-GB', { hour12: false });
  return withMs ? `${s}.${String(d.getMilliseconds()).padStart(3, '0')}` : s;
};

async function getJSON(path) {
  const res = await fetch(path, { cache: 'no-store', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

// ------------------------------------------------------------------------- the model

// Everything the views need, derived once per state: hosts by role, the primary, the
// health of every box. All fields of the state may be missing or null.
function model(state) {
  const topo = obj(state.topology);
  const status = obj(state.status);
  const hosts = arr(topo.hosts).filter((h) => h && typeof h.name === 'string');
  const withRole = (r) => hosts.filter((h) => arr(h.roles).includes(r));
  const statusHosts = new Map(arr(status.hosts).map((h) => [obj(h).name, obj(h)]));
  const figures = obj(obj(status.monitoring).hosts);
  const dbs = withRole('db');
  const primary = obj(status.primary).host
    || (dbs.find((h) => h.db === 'primary') || {}).name || '';
  const vips = [...new Set([...arr(topo.virtual_addresses),
    ...arr(status.virtual_addresses).map((v) => obj(v).address)].filter(Boolean))]
    .map((address) => ({
      address,
      heldBy: arr(obj(arr(status.virtual_addresses).find((v) => obj(v).address === address)).held_by),
    }));
  const m = {
    state, status, up: status.up === true, hosts, statusHosts, figures, primary, vips,
    clients: withRole('client'), lbs: withRole('lb'), webs: withRole('web'),
    dbs: [...dbs].sort((a, b) => (b.name === primary) - (a.name === primary)),
    monitors: withRole('monitor'),
  };
  m.webColour = new Map(m.webs.map((h, i) => [h.name, HOST_COLOURS[i % HOST_COLOURS.length]]));
  return m;
}

// The services of host `name` that its box in `role` stands for (see DB_SERVICES).
function boxServices(m, name, role) {
  const all = arr((m.statusHosts.get(name) || {}).services).map(obj).filter((s) => s.name);
  const roles = arr((m.hosts.find((h) => h.name === name) || {}).roles);
  if (role === 'db') return all.filter((s) => DB_SERVICES.includes(s.name));
  return roles.includes('db') ? all.filter((s) => !DB_SERVICES.includes(s.name)) : all;
}

// A host's network link (status.hosts[].link_up: eth0 up in its namespace): "up",
// "down", or "" when the status does not say.
function linkOf(m, name) {
  const h = m.statusHosts.get(name);
  if (!h || typeof h.link_up !== 'boolean') return '';
  return h.link_up ? 'up' : 'down';
}

// "up", "down", "paused" or "unknown" per service_json (status.cpp): up, paused, error.
function serviceState(svc) {
  if (!svc || svc.error) return 'unknown';
  if (svc.paused) return 'paused';
  return svc.up === true ? 'up' : 'down';
}

// What each load balancer's HAProxy says of web host `name`: "UP", "DOWN", "MAINT",
// "DRAIN", "UP 1/2" (going down), "DOWN 1/2" (coming up), "no check"...
// A balancer that is itself cut off (its link down) sees every web host DOWN: its view
// says nothing of the web hosts, so it is left out.
function lbViews(m, name) {
  return arr(m.status.load_balancers)
    .filter((lb) => lb && !lb.error && linkOf(m, lb.host) !== 'down')
    .map((lb) => (arr(lb.servers).find((s) => obj(s).name === name) || {}).status)
    .filter((s) => typeof s === 'string');
}
const lbSaysDown = (s) => s.startsWith('DOWN');
const lbSaysOut = (s) => /^(DOWN|MAINT|DRAIN|NOLB)/.test(s) || /^UP \d/.test(s);

// The health of host `name` seen in its `role`: down when a key service is not up (or
// every balancer has it DOWN, for a web host), paused when a service is stopped by
// SIGSTOP, degraded when something else is wrong, unknown without a status.
function health(m, name, role) {
  const h = m.statusHosts.get(name);
  if (!m.up || !h) return 'unknown';
  if (h.namespace_ok === false || linkOf(m, name) === 'down') return 'down';
  const keys = KEY_SERVICES[role] || [];
  const services = boxServices(m, name, role);
  if (keys.length && !services.some((svc) => keys.includes(svc.name))) return 'unknown';
  let paused = false;
  let degraded = false;
  for (const svc of services) {
    const st = serviceState(svc);
    if (keys.includes(svc.name) && st === 'down') return 'down';
    if (st === 'paused') paused = true;
    else if (st !== 'up') degraded = true;
  }
  if (paused) return 'paused';
  if (role === 'web') {
    const views = lbViews(m, name);
    if (views.length && views.every(lbSaysDown)) return 'down';
    if (views.some(lbSaysOut)) degraded = true;
  }
  if (role === 'lb' && arr(m.status.load_balancers).some((lb) => obj(lb).host === name && lb.error)) {
    degraded = true;
  }
  if (role === 'db') {
    if (name === m.primary) {
      const p = obj(m.status.primary);
      if (p.error || p.read_only === true) degraded = true;
    } else {
      const r = obj(arr(m.status.replication).find((x) => obj(x).host === name));
      if (r.error || r.io_running === false || r.sql_running === false) degraded = true;
    }
  }
  return degraded ? 'degraded' : 'ok';
}

// ---------------------------------------------------------------------- the topology

const BOX_W = 176, BOX_H = 74, GAP_X = 26, GAP_Y = 62, MARGIN = 20;

// The tiers top to bottom, as the seed draws its site. A host gets data-host in the first
// tier it appears in; a web host's database is a second box (data-db) below it.
function tiers(m) {
  const placed = new Set();
  const item = (h, role) => {
    const first = !placed.has(h.name);
    placed.add(h.name);
    return { id: `${role}:${h.name}`, name: h.name, role, host: h, first };
  };
  const list = [
    { kind: 'client', items: m.clients.length ? m.clients.map((h) => item(h, 'client'))
      : [{ id: 'internet', name: 'internet', role: 'client', host: {}, first: false }] },
    { kind: 'vip', items: m.vips.map((v) => ({ id: `vip:${v.address}`, role: 'vip', vip: v })) },
    { kind: 'lb', items: m.lbs.map((h) => item(h, 'lb')) },
    { kind: 'web', items: m.webs.map((h) => item(h, 'web')) },
    { kind: 'db', items: m.dbs.map((h) => item(h, 'db')) },
    { kind: 'monitor', items: m.monitors.map((h) => item(h, 'monitor')) },
  ];
  return list.filter((t) => t.items.length);
}

function renderTopology(m) {
  const ts = tiers(m);
  const widest = Math.max(...ts.map((t) => t.items.length));
  const width = Math.max(660, widest * (BOX_W + GAP_X) - GAP_X + 2 * MARGIN);
  const pos = new Map();
  ts.forEach((t, row) => {
    const total = t.items.length * (BOX_W + GAP_X) - GAP_X;
    t.items.forEach((it, i) => {
      // The replication arrows curve below the database tier: leave them room.
      const extra = ts.slice(0, row).some((x) => x.kind === 'db') ? 18 + 16 * Math.max(1, m.dbs.length - 1) : 0;
      const p = { x: (width - total) / 2 + i * (BOX_W + GAP_X), y: MARGIN + row * (BOX_H + GAP_Y) + extra };
      p.h = it.role === 'vip' ? 34 : BOX_H;
      p.y += it.role === 'vip' ? (BOX_H - p.h) / 2 : 0;
      pos.set(it.id, p);
    });
  });
  const height = Math.max(...[...pos.values()].map((p) => p.y + p.h)) + MARGIN;
  const of = (kind) => (ts.find((t) => t.kind === kind) || { items: [] }).items;
  const links = [];
  const labels = [];
  const link = (a, b, cls, label, labelAt = 0.5) => {
    const p = pos.get(a), q = pos.get(b);
    if (!p || !q) return;
    const x1 = p.x + BOX_W / 2, y1 = p.y + p.h, x2 = q.x + BOX_W / 2, y2 = q.y;
    links.push(svg('line', { x1, y1, x2, y2, class: `link ${cls}` }));
    if (label) {
      labels.push(svg('text', { x: x1 + (x2 - x1) * labelAt, y: y1 + (y2 - y1) * labelAt + 4,
        class: 'link-label', 'text-anchor': 'middle' }, label));
    }
  };
  const rate = (name) => {
    const v = obj(m.figures[name]).requests_per_s;
    return isNum(v) ? `${v.toFixed(1)} req/s` : '– req/s';
  };
  const upper = of('vip').length ? of('vip') : of('client');
  for (const c of of('client')) for (const v of of('vip')) link(c.id, v.id, 'active');
  for (const lb of of('lb')) {
    for (const u of upper) {
      const holds = !u.vip || u.vip.heldBy.includes(lb.name);
      link(u.id, lb.id, holds ? 'active' : 'standby', holds ? rate(lb.name) : null);
    }
    const views = new Map(arr(m.status.load_balancers).filter((x) => obj(x).host === lb.name)
      .flatMap((x) => arr(x.servers)).map((s) => [obj(s).name, obj(s).status || '']));
    const active = m.vips.length === 0 || m.vips.some((v) => v.heldBy.includes(lb.name));
    for (const w of of('web')) {
      const st = views.get(w.name) || '';
      link(lb.id, w.id, lbSaysOut(st) ? 'out' : active ? 'active' : 'standby');
    }
  }
  // One label per web host, just above it: the requests its app serves.
  for (const w of of('web')) {
    const p = pos.get(w.id);
    labels.push(svg('text', { x: p.x + BOX_W / 2, y: p.y - 8, class: 'link-label', 'text-anchor': 'middle' },
      rate(w.name)));
  }
  for (const w of of('web')) for (const d of of('db')) {
    link(w.id, d.id, d.name === m.primary ? 'db' : 'db standby');
  }
  const arrows = replicationArrows(m, of('db'), pos);
  const boxes = ts.flatMap((t) => t.items.map((it) => box(m, it, pos.get(it.id))));
  const root = $('#topology');
  root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  root.replaceChildren(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z' }))),
  ...links, ...arrows, ...boxes, ...labels);
}

// From the primary to each replica, curving below the database tier, labelled with the
// replica's lag and the primary's semi-sync state.
function replicationArrows(m, dbItems, pos) {
  const from = dbItems.find((d) => d.name === m.primary);
  if (!from) return [];
  const semi = obj(m.status.primary).semi_sync || '–';
  return dbItems.filter((d) => d !== from).flatMap((d, i) => {
    const p = pos.get(from.id), q = pos.get(d.id);
    const x1 = p.x + BOX_W / 2, x2 = q.x + BOX_W / 2, y = p.y + BOX_H, dip = 30 + i * 16;
    const r = obj(arr(m.status.replication).find((x) => obj(x).host === d.name));
    const broken = r.io_running === false || r.sql_running === false || r.error;
    return [
      svg('path', { d: `M${x1},${y} C${x1},${y + dip} ${x2},${y + dip} ${x2},${y + 2}`,
        class: `replication${broken ? ' out' : ''}`, 'marker-end': 'url(#arrow)' }),
      svg('text', { x: (x1 + x2) / 2, y: y + dip + 2, class: 'link-label', 'text-anchor': 'middle' },
        `replication · lag ${fmt(r.lag_s, 0)} s · semi-sync ${semi}${broken ? ' · BROKEN' : ''}`),
    ];
  });
}

// One box of the drawing: a <g> with data-health (and data-host for a host's first box).
function box(m, it, p) {
  if (it.role === 'vip') {
    const held = it.vip.heldBy;
    const hl = held.length === 1 ? 'ok' : held.length ? 'degraded' : 'down';
    return svg('g', { class: 'box vip', transform: `translate(${p.x},${p.y})`, 'data-vip': it.vip.address,
      'data-held-by': held.join(','), 'data-health': m.up ? hl : 'unknown' }, [
      svg('title', {}, `virtual address ${it.vip.address} (keepalived, VRRP)`),
      svg('rect', { width: BOX_W, height: p.h, rx: 17 }),
      svg('text', { x: BOX_W / 2, y: 21, 'text-anchor': 'middle', class: 'name' },
        `${it.vip.address} → ${held.length ? held.join(' + ') : 'nobody'}`),
    ]);
  }
  const hl = it.id === 'internet' ? (m.up ? 'ok' : 'unknown') : health(m, it.name, it.role);
  const services = boxServices(m, it.name, it.role);
  const shownNames = SHOWN_SERVICES[it.role] || [];
  const shown = services.filter((s) => shownNames.includes(s.name));
  const others = services.filter((s) => !shownNames.includes(s.name));
  const dot = (st) => svg('tspan', { fill: HEALTH_COLOURS[st] || HEALTH_COLOURS.unknown }, '● ');
  const svcLine = shown.flatMap((s) => [dot(serviceState(s)), `${SHORT_NAMES[s.name] || s.name}  `]);
  if (others.length) {
    const bad = others.filter((s) => serviceState(s) !== 'up').length;
    svcLine.push(svg('tspan', { class: bad ? 'bad' : 'muted' }, `+${others.length}${bad ? ` (${bad} not up)` : ''}`));
  }
  const title = it.role === 'db' ? `MariaDB ${it.name === m.primary ? 'primary' : 'replica'}` : it.name;
  const sub = it.role === 'db' ? `on ${it.name}` : it.host.address || '';
  const attrs = { class: `box ${it.role}`, transform: `translate(${p.x},${p.y})`, 'data-health': hl };
  if (it.first) attrs['data-host'] = it.name;
  if (it.role === 'db') attrs['data-db'] = it.name;
  const tooltip = [`${title} (${it.role}): ${hl}`, ...services.map((s) =>
    `${s.name}: ${serviceState(s)}${s.pid ? ` (pid ${s.pid}, ${s.uptime_s ?? '–'} s)` : ''}`)].join('\n');
  return svg('g', attrs, [
    svg('title', {}, tooltip),
    svg('rect', { width: BOX_W, height: p.h, rx: 7 }),
    svg('text', { x: 10, y: 18, class: 'name' }, title),
    svg('text', { x: 10, y: 33, class: 'muted' }, sub),
    svg('text', { x: BOX_W - 9, y: 33, 'text-anchor': 'end', class: 'health' }, hl),
    svg('text', { x: 10, y: 50 }, it.role === 'client' ? svg('tspan', { class: 'muted' }, 'the internet') : svcLine),
    svg('text', { x: 10, y: 65, class: 'muted' }, boxExtra(m, it)),
  ]);
}

// The last line of a box: what is special about the host in its role.
function boxExtra(m, it) {
  const load = obj(m.state.load);
  if (linkOf(m, it.name) === 'down') return 'LINK DOWN';
  switch (it.role) {
    case 'client': return load.running ? `load: ${load.rate ?? '–'} req/s` : 'load generator stopped';
    case 'lb': {
      const held = m.vips.filter((v) => v.heldBy.includes(it.name)).map((v) => v.address);
      return held.length ? `holds ${held.join(', ')}` : m.vips.length ? 'standby' : '';
    }
    case 'web': {
      const views = lbViews(m, it.name);
      return views.length ? `haproxy: ${views.join(' / ')}` : 'haproxy: –';
    }
    case 'db': {
      if (it.name === m.primary) {
        const p = obj(m.status.primary);
        return p.read_only === false ? 'writable' : p.read_only === true ? 'READ-ONLY' : '–';
      }
      const r = obj(arr(m.status.replication).find((x) => obj(x).host === it.name));
      const yn = (v) => (v === true ? '✓' : v === false ? '✗' : '–');
      return `io ${yn(r.io_running)}  sql ${yn(r.sql_running)}  lag ${fmt(r.lag_s, 0)} s`;
    }
    case 'monitor': return `alerts firing: ${arr(obj(m.status.monitoring).alerts).length}`;
    default: return '';
  }
}

// --------------------------------------------------------------------------- charts

function recordSample(m) {
  const t = isNum(m.state.time_ms) ? m.state.time_ms : Date.now();
  if (samples.length && samples[samples.length - 1].t >= t) return;   // not refreshed yet
  const hosts = {};
  for (const [name, f] of Object.entries(m.figures)) hosts[name] = obj(f);
  const lag = {};
  for (const r of arr(m.status.replication)) {
    const o = obj(r);
    lag[o.host] = isNum(o.lag_s) ? o.lag_s : obj(m.figures[o.host]).replication_lag_s;
  }
  samples.push({ t, hosts, lag });
  while (samples.length && samples[0].t < t - HISTORY_MS - 5000) samples.shift();
}

// A series per web host (and per replica for the lag), values null where missing.
function renderCharts(m) {
  const now = isNum(m.state.time_ms) ? m.state.time_ms : Date.now();
  const pick = (name, field) => samples.map((s) => [s.t, obj(s.hosts[name])[field]]);
  const webSeries = (field, extra = {}) => m.webs.map((h) => ({ label: h.name, colour: m.webColour.get(h.name),
    points: pick(h.name, field), ...extra }));
  drawChart($('#chart-rps'), now, webSeries('requests_per_s'), 1);
  const site = { label: 'site (lb)', colour: '#555', dash: [5, 4],
    points: samples.map((s) => {
      const v = m.lbs.map((h) => obj(s.hosts[h.name]).errors_5xx_per_s).filter(isNum);
      return [s.t, v.length ? v.reduce((a, b) => a + b, 0) : null];
    }) };
  drawChart($('#chart-5xx'), now, [...webSeries('errors_5xx_per_s'), ...(m.lbs.length ? [site] : [])], 2);
  const ms = (series) => series.map((s) => ({ ...s, points: s.points.map(([t, v]) => [t, isNum(v) ? v * 1000 : null]) }));
  drawChart($('#chart-latency'), now,
    ms([...webSeries('p99_s'), ...webSeries('p50_s', { dash: [4, 3], legend: false })]), 1);
  const replicas = m.dbs.filter((h) => h.name !== m.primary);
  drawChart($('#chart-lag'), now, replicas.map((h, i) => ({ label: h.name,
    colour: m.webColour.get(h.name) || HOST_COLOURS[(m.webs.length + i) % HOST_COLOURS.length],
    points: samples.map((s) => [s.t, s.lag[h.name]]) })), 0);
  const p = obj(m.status.primary);
  $('#semi-sync').textContent = p.host ? `· primary ${p.host}, semi-sync ${p.semi_sync || '–'}` : '';
}

// A small line chart: time on x (the last HISTORY_MS), 0..nice max on y, a legend with
// each series' latest value. Drawn at the device's pixel ratio so lines stay crisp.
function drawChart(canvas, now, series, digits) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 44, right = w - 10, top = 22, bottom = h - 20;
  const values = series.flatMap((s) => s.points.map(([, v]) => v)).filter(isNum);
  const { max, step } = axis(Math.max(digits === 0 ? 4 : 1, ...values), digits === 0 ? 1 : 0);
  const x = (t) => left + ((t - (now - HISTORY_MS)) / HISTORY_MS) * (right - left);
  const y = (v) => bottom - (v / max) * (bottom - top);
  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  // Grid and axis labels.
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i * step <= max * 1.0001; i++) {
    const v = i * step, yy = Math.round(y(v)) + 0.5;
    ctx.strokeStyle = i ? '#e6e8ec' : '#9aa1ab';
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(right, yy); ctx.stroke();
    ctx.fillStyle = '#6b7280';
    ctx.fillText(String(Number(v.toPrecision(3))), left - 6, yy);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const s of [120, 90, 60, 30, 0]) ctx.fillText(s ? `-${s} s` : 'now', x(now - s * 1000), bottom + 5);
  // The lines; a missing value breaks the line.
  ctx.save();
  ctx.beginPath(); ctx.rect(left, top - 2, right - left, bottom - top + 4); ctx.clip();
  // Earlier series are drawn wider, so that equal lines (round robin) show both colours.
  const solid = series.filter((s) => !s.dash);
  for (const s of series) {
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = s.dash ? 1.5 : 1.75 + 1.5 * (solid.length - 1 - solid.indexOf(s));
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (!isNum(v)) { pen = false; continue; }
      if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
      pen = true;
    }
    ctx.stroke();
  }
  ctx.restore();
  ctx.setLineDash([]);
  // The legend, top right, with the latest values.
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  let lx = right;
  for (const s of [...series].reverse().filter((s) => s.legend !== false)) {
    const last = [...s.points].reverse().find(([, v]) => isNum(v));
    const text = `${s.label} ${last ? last[1].toFixed(digits) : '–'}`;
    lx -= ctx.measureText(text).width + 26;
    ctx.strokeStyle = s.colour; ctx.lineWidth = 2; ctx.setLineDash(s.dash || []);
    ctx.beginPath(); ctx.moveTo(lx, 9); ctx.lineTo(lx + 14, 9); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#2b2f36';
    ctx.fillText(text, lx + 18, 9);
  }
  if (!values.length) {
    ctx.fillStyle = '#8a94a3';
    ctx.textAlign = 'center';
    ctx.fillText('no data yet', (left + right) / 2, (top + bottom) / 2);
  }
}

// A y axis from 0 to at least v in 3 to 5 steps of 1, 2 or 5 times a power of ten (and
// of at least minStep: whole seconds for the lag).
function axis(v, minStep = 0) {
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(minStep, [1, 2, 5, 10].map((k) => k * p).find((n) => n >= raw));
  return { step, max: step * Math.ceil(v / step) };
}

// ------------------------------------------------------------- tables, lists, status

function renderFigures(m) {
  const rows = m.hosts.map((h) => {
    const f = obj(m.figures[h.name]);
    const role = ['web', 'lb', 'db', 'monitor', 'client'].find((r) => arr(h.roles).includes(r)) || '';
    const hl = role === 'client' ? (m.up ? 'ok' : 'unknown') : health(m, h.name, role);
    return make('tr', {}, [
      make('td', {}, [make('span', { class: 'chip', style: `--c:${m.webColour.get(h.name) || 'transparent'}` }), h.name]),
      make('td', {}, make('span', { class: 'badge', 'data-health': hl }, hl)),
      make('td', { class: 'num', 'data-rate-host': h.name }, fmt(f.requests_per_s, 1)),
      make('td', { class: `num${f.errors_5xx_per_s > 0 ? ' bad' : ''}` }, fmt(f.errors_5xx_per_s, 2)),
      make('td', { class: 'num' }, fmt(f.p50_s, 1, 1000)),
      make('td', { class: 'num' }, fmt(f.p99_s, 1, 1000)),
      make('td', { class: 'num' }, fmt(f.replication_lag_s, 0)),
      make('td', { class: `num${f.alerts > 0 ? ' bad' : ''}` }, isNum(f.alerts) ? String(f.alerts) : '–'),
    ]);
  });
  $('#figures').replaceChildren(...rows);
}

function renderDatabase(m) {
  const p = obj(m.status.primary);
  const yn = (v) => (v === true ? 'yes' : v === false ? 'no' : '–');
  const lines = [make('p', {}, [make('b', {}, 'primary '), m.primary || '–',
    ` · ${p.read_only === false ? 'writable' : p.read_only === true ? 'read-only' : '–'}`,
    ` · semi-sync ${p.semi_sync || '–'}`, p.error ? make('span', { class: 'bad' }, ` · ${p.error}`) : null])];
  for (const r of arr(m.status.replication).map(obj)) {
    lines.push(make('p', {}, [make('b', {}, 'replica '), r.host || '–',
      ` · io ${yn(r.io_running)} · sql ${yn(r.sql_running)} · lag ${fmt(r.lag_s, 0)} s`,
      r.last_error || r.error ? make('span', { class: 'bad' }, ` · ${r.error || r.last_error}`) : null]));
  }
  if (m.status.failover) {
    const f = obj(m.status.failover);
    lines.push(make('p', {}, [make('b', {}, 'failover '), f.error ? make('span', { class: 'bad' }, f.error)
      : `automatic · sees ${f.primary || '–'} ${f.writable_primary ? 'writable' : 'NOT writable'}`
        + `${f.paused ? ' · PAUSED' : ''}${f.last_action ? ` · last: ${f.last_action}` : ''}`]));
  }
  $('#database').replaceChildren(...lines);
}

function renderAlerts(m) {
  const mon = obj(m.status.monitoring);
  const items = arr(mon.alerts).map(obj).map((a) => make('li', {}, [
    make('span', { class: 'badge', 'data-severity': a.severity || 'unknown' }, a.severity || '?'),
    make('b', {}, ` ${a.alert || '–'} `), a.host ? `${a.host} · ` : '', a.summary || '',
    a.since ? make('span', { class: 'muted' }, ` · since ${clock(Date.parse(a.since))}`) : null]));
  if (mon.error) items.unshift(make('li', { class: 'bad' }, `monitoring: ${mon.error}`));
  if (!items.length) items.push(make('li', { class: 'muted' }, m.status.monitoring ? 'none' : '–'));
  $('#alerts').replaceChildren(...items);
}

function renderEvents(state) {
  const events = arr(state.events).map(obj);
  const key = `${events.length}:${(events[events.length - 1] || {}).seq}`;
  if (key === eventsKey) return;
  eventsKey = key;
  $('#events').replaceChildren(...events.slice().reverse().map((e) => make('li', { 'data-level': e.level || 'info' }, [
    make('span', { class: 'muted' }, `${clock(e.time_ms)} `), e.text || ''])));
}

function renderLoad(m) {
  const load = obj(m.state.load);
  if (!loadRateSet && isNum(load.rate)) {
    $('#load-rate').value = load.rate;
    loadRateSet = true;
  }
  const byHost = Object.entries(obj(load.by_host)).map(([h, n]) => `${h} ${n}`).join(', ');
  const el = $('#load-state');
  el.dataset.loadRunning = String(load.running === true);
  el.replaceChildren(...(load.running === undefined ? ['–'] : [
    `${load.running ? `running at ${load.rate ?? '–'} req/s` : 'stopped'} · sent ${load.sent ?? '–'}, ok ${load.ok ?? '–'}, `,
    make('span', { class: load.failed > 0 ? 'bad' : null }, `failed ${load.failed ?? '–'}`),
    byHost ? ` · ${byHost}` : '']));
}

function renderHeader(m) {
  const s = m.state;
  $('#site').textContent = `lab ${s.lab || '–'} · ${s.site || '–'} · ${clock(s.time_ms)}`;
  const lab = $('#lab-state');
  const problems = [];
  if (s.status && s.status.up === false) problems.push('The lab is down (no s6-svscan running): start it with `webstack up`.');
  if (s.status_error) problems.push(`The last status sample failed: ${s.status_error}`);
  lab.hidden = !problems.length;
  lab.textContent = problems.join(' ');
  renderAction();
}

// The action in progress (the server's) or the answer to our last POST.
function renderAction() {
  const action = obj(lastState && lastState.action);
  const el = $('#action');
  const running = action.running === true;
  el.dataset.running = String(running || postInFlight);
  el.classList.remove('bad');
  if (running) el.textContent = `action in progress: ${action.label || '…'}`;
  else if (postInFlight) el.textContent = 'sending…';
  else if (actionMessage && Date.now() < actionMessage.until) {
    el.textContent = actionMessage.text;
    el.classList.toggle('bad', actionMessage.error);
  } else el.textContent = '';
  // One state-changing action at a time (the server answers 409 otherwise); the load
  // generator's buttons stay usable.
  for (const b of document.querySelectorAll('button[data-action]')) {
    b.disabled = !token || postInFlight || (running && b.dataset.action !== 'load');
  }
}

// ------------------------------------------------------------------------ requests

function renderRequests(webColour, requests) {
  const body = $('#requests');
  const rows = requests.slice(-MAX_REQUEST_ROWS).reverse().map(obj).map((r) => {
    const failed = r.error || !isNum(r.status) || r.status >= 500;
    return make('tr', { 'data-served-by': r.served_by || '', class: failed ? 'failed' : null }, [
      make('td', { class: 'muted' }, clock(r.time_ms, true)),
      make('td', {}, r.method || '–'), make('td', {}, r.path || '–'),
      make('td', { class: failed ? 'bad' : null }, isNum(r.status) ? String(r.status) : (r.error || '–')),
      make('td', {}, [make('span', { class: 'chip', style: `--c:${webColour.get(r.served_by) || 'transparent'}` }),
        r.served_by || '–']),
      make('td', {}, r.db_node || '–'),
      make('td', { class: 'num' }, fmt(r.ms, 1)),
    ]);
  });
  body.prepend(...rows);
  while (body.rows.length > MAX_REQUEST_ROWS) body.deleteRow(-1);
}

// ---------------------------------------------------------------------- fault buttons

// What a button will do, said before it does it (tooltip and confirmation).
function describe(action, target, m) {
  const [host, service] = (target || '').split('/');
  const role = (n) => arr((m.hosts.find((h) => h.name === n) || {}).roles);
  const isWeb = role(host).includes('web');
  const others = m.webs.map((h) => h.name).filter((n) => n !== host).join(', ') || 'the other web hosts';
  const effect = {
    'webstack-app': `${host} answers /readyz with 503 at once; HAProxy marks ${host} DOWN and sends its traffic to ${others}`,
    app: `HAProxy marks ${host} DOWN and sends its traffic to ${others}`,
    nginx: `HAProxy's checks of ${host} fail: it is marked DOWN and its traffic goes to ${others}`,
    haproxy: `keepalived sees ${host}'s HAProxy fail its /healthz and the other balancer takes the virtual address (about 1 s)`,
    keepalived: `${host} stops taking part in VRRP: if it holds the virtual address, the other balancer takes it over`,
    mariadb: host === m.primary
      ? 'the primary\'s database is gone: writes fail until the failover manager promotes a replica (about 3 s with automatic failover)'
      : `the replica ${host} stops replicating and serving reads; the apps read from the primary`,
    prometheus: 'the figures and charts of this page stop updating',
  }[service] || `${service} on ${host} is unavailable`;
  switch (action) {
    case 'stop': return `Stop ${service} on ${host} (s6 down: SIGTERM, then it stays down until Start): ${effect}.`;
    case 'start': return `Start ${service} on ${host} (s6 up)${isWeb ? `: once it answers, HAProxy puts ${host} back in rotation after two good checks` : ''}.`;
    case 'kill': return `Kill ${service} on ${host} (SIGKILL to its process group: a crash): its requests in flight fail or are retried; s6 restarts it within about 1 s.`;
    case 'pause': return `Hang ${service} on ${host} (SIGSTOP to its process group): it stops answering but keeps its connections; ${isWeb ? `HAProxy's checks time out and mark ${host} DOWN (about 1 s)` : effect}. Resume undoes it.`;
    case 'resume': return `Resume ${service} on ${host} (SIGCONT): it answers again${isWeb ? `; HAProxy marks ${host} UP after two good checks` : ''}.`;
    case 'link-down': return `Take ${host}'s network link down (unplug it): nothing reaches ${host} and it reaches nothing; ${
      role(host).includes('lb') ? 'if it holds the virtual address, the other balancer takes it (about 1 s)'
        : isWeb ? `HAProxy marks it DOWN (about 2 s)${host === m.primary ? ' and, its database being the primary, a replica is promoted' : ''}`
          : 'its peers see it as gone'}.`;
    case 'link-up': return `Bring ${host}'s network link back up (plug it in again): it rejoins the lab${
      isWeb ? `; HAProxy marks it UP after two good checks` : ''}.`;
    case 'promote': return `Promote ${host} to primary: the current primary (${m.primary || '–'}) is fenced read-only, ${host} catches up, becomes writable, and the old primary replicates from it (about 1 s); the apps follow by themselves.`;
    case 'deploy': return 'Rolling deploy of every web host, one at a time: drained on every load balancer, app restarted, Nginx reloaded, back in rotation; then each balancer\'s HAProxy reloaded. No request should fail.';
    default: return action;
  }
}

function button(action, label, attrs, m) {
  const key = action === 'link' ? `link-${attrs['data-state']}` : action;
  return make('button', { 'data-action': action, ...attrs, title: describe(key, attrs['data-target'], m) }, label);
}

// Built again only when the hosts or their services change, so that a button is not
// replaced under the pointer; the service states are refreshed in place.
function renderFaults(m) {
  const servicesOf = (h) => arr(obj(m.statusHosts.get(h.name)).services).map(obj).filter((s) => s.name);
  const key = JSON.stringify([m.primary, m.hosts.map((h) => [h.name, servicesOf(h).map((s) => s.name)])]);
  if (key !== faultsKey) {
    faultsKey = key;
    $('[data-action=deploy]').title = describe('deploy', '', m);
    $('#faults').replaceChildren(...m.hosts.map((h) => {
      const services = servicesOf(h);
      const isReplica = arr(h.roles).includes('db') && h.name !== m.primary;
      return make('div', { class: 'card' }, [
        make('h3', {}, [h.name, make('span', { class: 'muted' }, ` ${arr(h.roles).join(', ')}`)]),
        make('table', {}, services.map((s) => {
          const target = `${h.name}/${s.name}`;
          return make('tr', {}, [
            make('td', {}, s.name),
            make('td', {}, make('span', { class: 'badge', 'data-service': target }, '–')),
            make('td', { class: 'buttons' }, [['stop', 'stop'], ['start', 'start'], ['kill', 'kill'],
              ['pause', 'hang'], ['resume', 'resume']].map(([a, label]) => button(a, label, { 'data-target': target }, m))),
          ]);
        })),
        make('div', { class: 'buttons' }, [
          button('link', 'link down', { 'data-target': h.name, 'data-state': 'down' }, m),
          button('link', 'link up', { 'data-target': h.name, 'data-state': 'up' }, m),
          isReplica ? button('promote', 'promote to primary', { 'data-target': h.name }, m) : null,
        ]),
      ]);
    }));
  }
  for (const h of m.hosts) {
    for (const s of servicesOf(h)) {
      const badge = document.querySelector(`[data-service="${CSS.escape(`${h.name}/${s.name}`)}"]`);
      if (!badge) continue;
      const st = serviceState(s);
      badge.textContent = st;
      badge.dataset.health = st === 'up' ? 'ok' : st;
    }
  }
}

async function onClick(ev) {
  const b = ev.target.closest('button[data-action]');
  if (!b || b.disabled || !token) return;
  const { action, target, state } = b.dataset;
  const body = { action };
  if (target) body.target = target;
  if (state) body.state = state;
  if (action === 'load' && state === 'start') {
    const rate = Math.round(Number($('#load-rate').value));
    if (!(rate >= 1 && rate <= 200)) {
      actionMessage = { text: 'the rate must be 1 to 200 requests per second', error: true, until: Date.now() + 5000 };
      renderAction();
      return;
    }
    body.rate = rate;
  }
  // Every fault asks first; the load generator does not.
  if (action !== 'load' && !window.confirm(`${b.title}\n\nGo ahead?`)) return;
  postInFlight = true;
  renderAction();
  try {
    const res = await fetch('/api/action', {
      method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      headers: { 'Content-Type': 'application/json', 'X-Dashboard-Token': token },
    });
    const answer = await res.json().catch(() => ({}));
    actionMessage = res.ok
      ? { text: `accepted: ${answer.label || action}`, error: false, until: Date.now() + 4000 }
      : { text: `refused (${res.status}): ${answer.error || res.statusText}`, error: true, until: Date.now() + 10000 };
  } catch (e) {
    actionMessage = { text: `server not answering: ${e.message}`, error: true, until: Date.now() + 10000 };
  } finally {
    postInFlight = false;
    renderAction();
  }
}

// -------------------------------------------------------------------------- polling

function setOnline(ok, detail) {
  const el = $('#connection');
  el.dataset.online = String(ok);
  el.textContent = ok ? 'live' : `server not answering${detail ? ` (${detail})` : ''}; retrying`;
}

async function pollState() {
  let state;
  try {
    state = obj(await getJSON('/api/state'));
    setOnline(true);
  } catch (e) {
    setOnline(false, e.name === 'TimeoutError' ? 'timeout' : e.message);
  }
  // A rendering error is the page's own bug: reported as uncaught (console, the browser
  // test fails on it), and the polling goes on.
  try {
    if (state) render(state);
  } catch (e) {
    window.reportError(e);
  } finally {
    setTimeout(pollState, POLL_MS);
  }
}

function render(state) {
  lastState = state;
  const m = model(state);
  recordSample(m);
  renderHeader(m);
  renderTopology(m);
  renderCharts(m);
  renderFigures(m);
  renderDatabase(m);
  renderAlerts(m);
  renderLoad(m);
  renderFaults(m);
  renderEvents(state);
  renderAction();   // again: renderFaults may have made new buttons
}

async function pollRequests() {
  try {
    const answer = obj(await getJSON(`/api/requests?after=${requestsAfter}`));
    // Taken as it is, even when smaller: the server was restarted and counts anew.
    if (isNum(answer.next)) requestsAfter = answer.next;
    const requests = arr(answer.requests);
    if (requests.length) renderRequests(lastState ? model(lastState).webColour : new Map(), requests);
  } catch {
    // pollState reports the server as not answering; the stream just waits.
  } finally {
    setTimeout(pollRequests, POLL_MS);
  }
}

function init() {
  if (!token) {
    const el = $('#readonly');
    el.hidden = false;
    el.textContent = 'Read-only: this URL has no #token=… (open the URL that `webstack dashboard` printed; '
      + 'the token is dropped from the address bar once read, so a reload needs it again).';
  }
  document.addEventListener('click', onClick);
  // Charts follow the panel's width.
  window.addEventListener('resize', () => lastState && renderCharts(model(lastState)));
  renderAction();
  pollState();
  pollRequests();
}

init();
