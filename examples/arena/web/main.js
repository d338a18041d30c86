// The arena's page (examples/arena/arena.c): a canvas, names and a leader board, over stdb's
// TypeScript SDK (sdk/typescript).  Built by tools/build_web.py into stdb/web/arena/app.js,
// which `stdb start --demo` serves at /.
//
// What it shows is what it subscribes to: the food and the players in a region around this
// tab's player, by range predicates on x and y (answered from the tables' btree indexes), moved
// as the player moves (the new region subscribed before the old one is dropped, so nothing
// blinks); this tab's own player by `id = :sender`; the leaders by a one-off query every 2 s.

import { connect, toHex } from '../../../sdk/typescript/src/index.js';

const WORLD = 4000;          // examples/arena/arena.c
const CELL = 500;            // regions are snapped to this grid: resubscribed when the cell changes
const params = new URLSearchParams(location.search);
// world units across the window's width (?view=4000: the whole world)
const VIEW_W = Math.min(WORLD, Math.max(400, Number(params.get('view')) || 1600));
const url = params.get('server') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
const database = params.get('db') ?? 'arena';

// a token per tab (sessionStorage): a second tab is a second player
const storage = {
  get: (k) => sessionStorage.getItem(`arena.token:${k}`),
  set: (k, v) => sessionStorage.setItem(`arena.token:${k}`, v),
};

const canvas = document.getElementById('view');
const ctx = canvas.getContext('2d');
const $ = (id) => document.getElementById(id);
const state = { conn: null, me: null, region: null, sub: null, leaders: [], dir: [0, 0], lastSent: '' };
window.arena = state;        // for the browser test (tests/browser) and the curious
state.id = () => (state.conn?.identity ? toHex(state.conn.identity) : null);
state.player = (idHex) => {  // a player as this page's cache holds it, or null
  for (const p of state.conn?.table('player') ?? []) if (toHex(p.id) === idHex) return p;
  return null;
};

function setStatus(text) { $('status').textContent = text; }

function hue(id) { // a stable colour per identity
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id[i]) % 360;
  return h;
}

function mine() {
  const c = state.conn;
  if (!c || !c.identity) return null;
  return c.table('player').find(c.identity) ?? null;
}

function regionOf(p) {
  const half = VIEW_W;       // a window's width each way: the view and a margin
  const x0 = Math.max(0, Math.floor((p.x - half) / CELL) * CELL);
  const y0 = Math.max(0, Math.floor((p.y - half) / CELL) * CELL);
  const x1 = Math.min(WORLD, Math.ceil((p.x + half) / CELL) * CELL);
  const y1 = Math.min(WORLD, Math.ceil((p.y + half) / CELL) * CELL);
  return { x0, y0, x1, y1, key: `${x0},${y0},${x1},${y1}` };
}

async function follow(p) {
  const r = regionOf(p);
  if (state.region && state.region.key === r.key) return;
  state.region = r;
  const where = `x >= ${r.x0} AND x < ${r.x1} AND y >= ${r.y0} AND y < ${r.y1}`;
  const old = state.sub;
  const sub = state.conn.subscribe(`SELECT * FROM food WHERE ${where}`, `SELECT * FROM player WHERE ${where}`);
  state.sub = sub;
  try {
    await sub.applied;
  } catch (e) {
    setStatus(`subscribing failed: ${e.message}`);
    return;
  }
  if (old) old.unsubscribe().catch(() => {});
  state.regions = (state.regions ?? 0) + 1;
}

async function steer(dx, dy) {
  const key = `${dx},${dy}`;
  if (key === state.lastSent || !state.conn || state.conn.state !== 'connected') return;
  state.lastSent = key;
  try {
    await state.conn.call('set_direction', dx, dy);
  } catch (e) {
    state.lastSent = '';
    setStatus(`steering failed: ${e.message}`);
  }
}

// mouse: the direction from the middle of the window (where this player is drawn)
let pending = null;
canvas.addEventListener('mousemove', (ev) => {
  const dx = Math.round(ev.clientX - innerWidth / 2);
  const dy = Math.round(ev.clientY - innerHeight / 2);
  if (Math.hypot(dx, dy) < 8) return;
  const n = Math.hypot(dx, dy);
  pending = [Math.round((dx / n) * 1000), Math.round((dy / n) * 1000)];
});
setInterval(() => { if (pending) { const [dx, dy] = pending; pending = null; steer(dx, dy); } }, 100);
const KEYS = { ArrowLeft: [-1000, 0], ArrowRight: [1000, 0], ArrowUp: [0, -1000], ArrowDown: [0, 1000],
  a: [-1000, 0], d: [1000, 0], w: [0, -1000], s: [0, 1000], ' ': [0, 0] };
addEventListener('keydown', (ev) => {
  if (document.activeElement === $('name')) return;
  const d = KEYS[ev.key];
  if (d) { ev.preventDefault(); steer(d[0], d[1]); }
});
$('name').addEventListener('keydown', async (ev) => {
  if (ev.key !== 'Enter') return;
  const name = $('name').value.trim();
  if (!name) return;
  try {
    (await state.conn.call('set_name', name)).raiseForStatus();
    $('name').blur();
  } catch (e) {
    setStatus(`the name was refused: ${e.message}`);
  }
});

async function leaders() {
  if (!state.conn || state.conn.state !== 'connected') return;
  try {
    const r = await state.conn.query('SELECT id, name, score, size FROM player ORDER BY score DESC LIMIT 10');
    state.leaders = r.rows;
  } catch { /* shown again next time */ }
  const me = state.conn.identity ? toHex(state.conn.identity) : '';
  const ol = $('leaders');
  ol.replaceChildren(...state.leaders.map((row) => {
    const li = document.createElement('li');
    const [id, name, score] = Array.isArray(row) ? row : [row.id, row.name, row.score];
    li.textContent = `${name || 'player ' + toHex(id).slice(0, 6)} — ${score}`;
    if (toHex(id) === me) li.className = 'me';
    return li;
  }));
}
setInterval(leaders, 2000);

function draw() {
  requestAnimationFrame(draw);
  const w = (canvas.width = innerWidth * devicePixelRatio);
  const h = (canvas.height = innerHeight * devicePixelRatio);
  const scale = w / (VIEW_W * devicePixelRatio) * devicePixelRatio;
  ctx.fillStyle = '#10141c';
  ctx.fillRect(0, 0, w, h);
  const me = mine();
  if (!state.conn || !me) return;
  state.me = me;
  $('size').textContent = me.size;
  $('score').textContent = me.score;
  follow(me);
  const cx = me.x, cy = me.y;
  const sx = (x) => w / 2 + (x - cx) * scale;
  const sy = (y) => h / 2 + (y - cy) * scale;
  // the world's edge and a grid
  ctx.strokeStyle = '#1f2736';
  ctx.lineWidth = 1;
  for (let g = 0; g <= WORLD; g += 250) {
    ctx.beginPath(); ctx.moveTo(sx(g), sy(0)); ctx.lineTo(sx(g), sy(WORLD)); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(sx(0), sy(g)); ctx.lineTo(sx(WORLD), sy(g)); ctx.stroke();
  }
  ctx.strokeStyle = '#ef476f';
  ctx.lineWidth = 3;
  ctx.strokeRect(sx(0), sy(0), WORLD * scale, WORLD * scale);
  ctx.fillStyle = '#06d6a0';
  for (const f of state.conn.table('food')) {
    ctx.beginPath(); ctx.arc(sx(f.x), sy(f.y), Math.max(2, 6 * scale), 0, 2 * Math.PI); ctx.fill();
  }
  const players = [...state.conn.table('player')].sort((a, b) => a.size - b.size);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  for (const p of players) {
    const hh = hue(p.id);
    ctx.fillStyle = `hsl(${hh} 70% 55%)`;
    ctx.strokeStyle = p === me || toHex(p.id) === toHex(me.id) ? '#ffd166' : `hsl(${hh} 70% 35%)`;
    ctx.lineWidth = 3;
    ctx.beginPath(); ctx.arc(sx(p.x), sy(p.y), p.size * scale, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    ctx.fillStyle = '#fff';
    ctx.font = `${Math.max(11, Math.min(22, p.size * scale * 0.6))}px system-ui, sans-serif`;
    ctx.fillText(p.name || toHex(p.id).slice(0, 6), sx(p.x), sy(p.y));
  }
}

async function main() {
  setStatus(`connecting to ${url} …`);
  try {
    state.conn = await connect({
      url, database, storage,
      onDisconnect: (why) => setStatus(`disconnected (${why ?? 'the connection dropped'}); reconnecting…`),
      onReconnect: () => { state.region = null; setStatus('reconnected'); },
    });
  } catch (e) {
    setStatus(`cannot connect: ${e.message}`);
    return;
  }
  const me = state.conn.subscribe('SELECT * FROM player WHERE id = :sender');
  await me.applied;
  setStatus(`connected as ${toHex(state.conn.identity).slice(0, 12)}… to '${database}'`);
  state.ready = true;
  leaders();
  requestAnimationFrame(draw);
}

main();
