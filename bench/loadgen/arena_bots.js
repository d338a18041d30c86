#!/usr/bin/env node
// Bots for the arena benchmark (`python -m bench.arena`): players of examples/arena/arena.c,
// one Node process, speaking stdb's CBOR protocol raw (docs/protocol.md; helpers from load.js).
//
//   node arena_bots.js URL BOTS SECONDS [--warmup S] [--half H] [--cell C] [--steer-min S]
//                      [--steer-max S] [--seed N]
//
// Each bot connects with an identity of its own (its client_connected spawns its player),
// subscribes to `SELECT * FROM player WHERE id = :sender` (its own player, wherever it is), and
// to the food and players of the region around its player, like the arena's page: x and y
// within ±H (default 800) world units, snapped outwards to a C-unit grid (default 500) and
// clamped to the world; when the region changes it subscribes to the new one and, once that is
// applied, unsubscribes the old (one change in flight per bot).  It steers like a player:
// set_direction to a random direction every --steer-min..--steer-max seconds (default 1-2).
//
// Measured, over SECONDS after --warmup (default 3) seconds: every TransactionUpdate of a
// `tick` (request_id null): its latency, receive time (epoch, µs, performance.timeOrigin +
// performance.now()) - the update's `timestamp` (the tick call's time, µs since the epoch,
// the server's clock: the same machine), and its size (the frame's bytes; a message in parts
// counts every part, its latency at the last); the distinct tick offsets seen.  Errors: an
// `Error` message, a call not committed, a subscription refused, a connection closed by the
// server, anything unexpected.
//
// Prints {"event":"ready"} once every bot has its player and region, {"event":"start"} and
// {"event":"stop"} around the measured window, then one JSON result line.
'use strict';

const lg = require('./load.js');

const WORLD = 4000;                  // examples/arena/arena.c
const COL = { x: 2, y: 3 };          // player: id, name, x, y, dir_x, dir_y, size, score

function usage(msg) {
  process.stderr.write(`arena_bots.js: ${msg}\nusage: node arena_bots.js URL BOTS SECONDS [--warmup S] ` +
                       '[--half H] [--cell C] [--steer-min S] [--steer-max S] [--seed N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const [pos, opt] = lg.parseOptions(argv, { warmup: 3, half: 800, cell: 500, 'steer-min': 1, 'steer-max': 2,
    seed: 1 }, 3, usage);
  const [url, bots, seconds] = pos;
  const a = { url, bots: Number(bots), seconds: Number(seconds), ...opt };
  if (!(Number.isInteger(a.bots) && a.bots >= 1)) usage('BOTS must be an integer >= 1');
  if (!(a.seconds > 0) || !(a.cell > 0) || !(a.half >= 0)) usage('SECONDS, --cell must be > 0, --half >= 0');
  if (!(a['steer-min'] > 0 && a['steer-max'] >= a['steer-min'])) usage('need 0 < --steer-min <= --steer-max');
  return a;
}

const epochUs = () => (performance.timeOrigin + performance.now()) * 1e3;

function regionOf(x, y, half, cell) {
  const x0 = Math.max(0, Math.floor((x - half) / cell) * cell);
  const y0 = Math.max(0, Math.floor((y - half) / cell) * cell);
  const x1 = Math.min(WORLD, Math.ceil((x + half) / cell) * cell);
  const y1 = Math.min(WORLD, Math.ceil((y + half) / cell) * cell);
  return { key: `${x0},${y0},${x1},${y1}`, where: `x >= ${x0} AND x < ${x1} AND y >= ${y0} AND y < ${y1}` };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  let errors = 0;
  const firstErrors = [];
  const fail = (what) => { errors += 1; if (firstErrors.length < 10) firstErrors.push(what.slice(0, 400)); };
  let measuring = false;
  let closing = false;
  const fresh = () => ({
    lat: [], tickUpdates: 0, tickBytes: 0, otherUpdates: 0, otherBytes: 0, offsets: new Set(),
    resubscribes: 0, steers: 0,
  });
  let m = fresh();
  let seed = (a.seed * 2654435761) >>> 0 || 1;
  const rand = () => {                               // xorshift32: the same sequence every run
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed / 2 ** 32;
  };

  function bot(i) {
    const b = { i, ws: null, rid: 0, selfRid: 0, selfQid: null, x: null, y: null, region: null, subs: [],
      resub: null, calls: new Set(), ticks: 0, partBytes: 0, steerTimer: null, ready: null };
    const send = (obj) => { b.rid += 1; b.ws.send(lg.cbor.encode({ ...obj, request_id: b.rid })); return b.rid; };

    function follow() {                  // subscribe to the region around the player if it changed
      if (b.resub || b.x === null || closing) return;
      const r = regionOf(b.x, b.y, a.half, a.cell);
      if (b.region && b.region.key === r.key) return;
      b.resub = { region: r, rid: send({ type: 'Subscribe', queries: [`SELECT * FROM food WHERE ${r.where}`,
        `SELECT * FROM player WHERE ${r.where}`] }) };
    }

    function steer() {
      if (closing) return;
      const angle = rand() * 2 * Math.PI;
      b.calls.add(send({ type: 'CallReducer', reducer: 'set_direction',
        args: [Math.round(Math.cos(angle) * 1000), Math.round(Math.sin(angle) * 1000)] }));
      if (measuring) m.steers += 1;
      const s = a['steer-min'] + rand() * (a['steer-max'] - a['steer-min']);
      b.steerTimer = setTimeout(steer, s * 1e3);
    }

    function mine(rows) {                // the bot's own player: the last row of the :sender query
      if (rows.length) { const p = rows[rows.length - 1]; b.x = Number(p[COL.x]); b.y = Number(p[COL.y]); }
    }

    const onMessage = (msg, bytes) => {
      const t = epochUs();
      if (msg.type === 'TransactionUpdate') {
        for (const u of msg.updates) if (u.query_id === b.selfQid) mine(u.inserts);
        b.partBytes += bytes;
        if (msg.more) return;
        const total = b.partBytes;
        b.partBytes = 0;
        const rid = msg.request_id === null || msg.request_id === undefined ? null : Number(msg.request_id);
        if (rid !== null) {
          if (!b.calls.delete(rid)) fail(`bot ${i}: an answer to no call of its own: ${JSON.stringify(msg, lg.jsonSafe)}`);
          else if (msg.status !== 'committed') fail(`bot ${i}: set_direction ${msg.status}: ${msg.message}`);
          if (measuring) { m.otherUpdates += 1; m.otherBytes += total; }
        } else if (msg.reducer === 'tick') {
          b.ticks += 1;
          if (measuring) {
            m.tickUpdates += 1;
            m.tickBytes += total;
            m.lat.push(t - Number(msg.timestamp));
            m.offsets.add(Number(msg.offset));
          }
        } else if (measuring) { m.otherUpdates += 1; m.otherBytes += total; }
        follow();
      } else if (msg.type === 'SubscribeApplied') {
        const rid = Number(msg.request_id);
        if (msg.more) return;                         // the region's rows in parts: the last one counts
        if (rid === b.selfRid) {
          b.selfQid = msg.queries[0].query_id;
          mine(msg.queries[0].rows);
          follow();
        } else if (b.resub && rid === b.resub.rid) {
          const old = b.subs;
          b.subs = msg.queries.map((q) => q.query_id);
          b.region = b.resub.region;
          b.resub = null;
          if (measuring) m.resubscribes += 1;
          if (old.length) send({ type: 'Unsubscribe', query_ids: old });
          if (b.ready) { const r = b.ready; b.ready = null; r(b); }
          follow();
        } else fail(`bot ${i}: unexpected ${JSON.stringify(msg, lg.jsonSafe).slice(0, 300)}`);
      } else if (msg.type === 'UnsubscribeApplied') {
        // the old region is gone
      } else if (msg.type === 'Closed') {
        if (!closing) fail(`bot ${i}: closed by the server: ${msg.code} ${msg.detail}`);
        if (b.ready) { const r = b.ready; b.ready = null; r(b); }
      } else {
        fail(`bot ${i}: ${JSON.stringify(msg, lg.jsonSafe).slice(0, 300)}`);
        if (msg.type === 'Error' && b.resub && Number(msg.request_id) === b.resub.rid) b.resub = null;
      }
    };
    return lg.connect(a.url, onMessage).then((ws) => new Promise((resolve) => {
      b.ws = ws;
      b.ready = resolve;
      b.selfRid = send({ type: 'Subscribe', queries: ['SELECT * FROM player WHERE id = :sender'] });
      b.steerTimer = setTimeout(steer, rand() * a['steer-max'] * 1e3);     // bots start out of step
    }));
  }

  const t00 = lg.now();
  const bots = await Promise.race([
    lg.connectMany(a.bots, a.url, bot, 20),
    lg.sleep(60 + a.bots * 0.5).then(() => { throw new Error('the bots did not all get their region in time'); }),
  ]);
  lg.out({ event: 'ready', bots: a.bots, connect_seconds: (lg.now() - t00) / 1e6 });
  await lg.sleep(a.warmup);

  m = fresh();
  for (const b of bots) b.ticks = 0;
  measuring = true;
  const cpu0 = process.cpuUsage();
  const t0 = lg.now();
  lg.out({ event: 'start' });
  await lg.sleep(a.seconds);
  measuring = false;
  const wall = (lg.now() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  lg.out({ event: 'stop' });
  const perBot = bots.map((b) => b.ticks / wall).sort((x, y) => x - y);
  const lat = Float64Array.from(m.lat).sort();
  const ms = (us) => (us === null ? null : us / 1e3);
  lg.out({
    event: 'result', bots: a.bots, seconds: wall, warmup: a.warmup, half: a.half, cell: a.cell,
    ticks_seen: m.offsets.size, tick_rate_seen: m.offsets.size / wall,
    tick_updates: m.tickUpdates, tick_bytes: m.tickBytes,
    tick_message_bytes_mean: m.tickUpdates ? m.tickBytes / m.tickUpdates : null,
    diff_bytes_per_client_per_tick: m.offsets.size ? m.tickBytes / (a.bots * m.offsets.size) : null,
    latency_p50_ms: ms(lg.percentile(lat, 0.5)), latency_p99_ms: ms(lg.percentile(lat, 0.99)),
    latency_max_ms: lat.length ? ms(lat[lat.length - 1]) : null,
    bot_tick_rate_min: perBot[0], bot_tick_rate_median: perBot[Math.floor((perBot.length - 1) / 2)],
    other_updates: m.otherUpdates, other_bytes: m.otherBytes, resubscribes: m.resubscribes, steers: m.steers,
    errors, first_errors: firstErrors, loadgen_cpu: (cpu.user + cpu.system) / (wall * 1e6),
  });
  closing = true;
  for (const b of bots) clearTimeout(b.steerTimer);
  await lg.closeAll(bots.map((b) => b.ws));
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`arena_bots.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
