#!/usr/bin/env node
// Load generator of `python -m bench.network` (issue 7): websocket clients speaking stdb's CBOR
// protocol (docs/protocol.md), one Node process, one core.
//
//   node load.js URL CLIENTS SECONDS MODE ACCOUNTS [--warmup S] [--trials N] [--gap S]
//                [--inflight K] [--zipf ALPHA]
//
// MODE transfer: CLIENTS closed-loop clients, each sending CallReducer transfer(from, to, 1) and
//   waiting for the TransactionUpdate answering it (same request_id) before sending the next.
//   With --inflight K (default 1) each connection keeps K calls in flight: it sends K at once,
//   then a new one as soon as one of its answers arrives (matched by request_id).  Both accounts
//   are uniform in 1..ACCOUNTS, or with --zipf ALPHA > 0 (default 0: uniform) drawn from a Zipf
//   distribution, P(rank k) proportional to 1 / k^ALPHA, rank k = account k (a precomputed CDF
//   and a binary search; `to` is drawn again until it differs from `from`).  A call's latency:
//   from sending it to its answer.  After --warmup seconds, prints {"event":"start"}, measures
//   SECONDS seconds, then prints one JSON result line: {clients, inflight, zipf, messages, seconds,
//   msg_per_s, p50_us, p99_us, errors, loadgen_cpu, account1_share} (account1_share: the share of
//   the measured calls with account 1 at either end).
// MODE fanout: CLIENTS clients each Subscribe to `SELECT * FROM account WHERE id = 1`; one more
//   client calls transfer(1, 2, 1) --trials times, --gap seconds apart; each trial is the time from
//   sending the call to the last subscriber receiving its TransactionUpdate.  URL may be several
//   comma-separated URLs (the nodes of a replicated cluster, `python -m bench.replication`):
//   subscriber i connects to URL number i % n, the caller to the first; the result then also has,
//   per URL, its subscribers' last-diff times and every delivery's latency (`per_url`).  Prints
//   {"event":"start"} once everyone is connected, before the first trial.
// MODE soak (`python -m bench.soak`, issue 8): CLIENTS subscribers, client i subscribed to
//   `SELECT * FROM account WHERE id = <i % HOT + 1>` (--hot accounts, default 100), plus --callers
//   connections (default 4) sending an open-loop load of --rate transfer calls/s between them (each
//   end a hot account with probability --hot-prob, else any account), for --warmup then SECONDS
//   seconds.  Diff latency: from sending a call to each subscriber receiving the TransactionUpdate
//   whose `offset` is the one the caller's answer carried.  Prints {"event":"ready"} once all are
//   subscribed, {"event":"start"} after the warm-up, a {"event":"progress"} line every --progress
//   seconds, {"event":"stop"}, then (after waiting at most --drain seconds for what is in flight)
//   the result line.  A connection closed by the server counts as an error and is reopened.
//
// Messages are CBOR maps with string keys; integers go out as CBOR integers (cbor-x writes
// numbers beyond 32 bits as floats, so those are sent as BigInts).  The stdb server refuses
// unknown fields, so a message has exactly the protocol's fields.
'use strict';

const WebSocket = require('ws');
const { Encoder } = require('cbor-x');

const SUBPROTOCOL = 'v1.cbor.stdb';
const FANOUT_SQL = 'SELECT * FROM account WHERE id = 1';
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });

function usage(msg) {
  process.stderr.write(`load.js: ${msg}\nusage: node load.js URL CLIENTS SECONDS MODE ACCOUNTS ` +
                       '[--warmup S] [--trials N] [--gap S] [--inflight K] [--zipf ALPHA] ' +
                       '[--rate R --callers K --hot H --hot-prob P --progress S --drain S]\n');
  process.exit(2);
}

// positional arguments and numeric --options (known ones only, each with its default) from argv
function parseOptions(argv, defaults, positional, usage) {
  const pos = [];
  const opt = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      const k = argv[i].slice(2);
      if (!(k in opt) || i + 1 >= argv.length) usage(`bad option ${argv[i]}`);
      opt[k] = Number(argv[++i]);
    } else pos.push(argv[i]);
  }
  if (pos.length !== positional) usage(`${positional} positional arguments expected`);
  return [pos, opt];
}

function parseArgs(argv) {
  const [pos, opt] = parseOptions(argv, { warmup: 1, trials: 20, gap: 0.05, rate: 500, callers: 4, hot: 100,
    'hot-prob': 0.25, progress: 30, drain: 10, inflight: 1, zipf: 0 }, 5, usage);
  const [url, clients, seconds, mode, accounts] = pos;
  if (mode !== 'transfer' && mode !== 'fanout' && mode !== 'soak') usage(`unknown mode ${mode}`);
  if (!(Number.isInteger(opt.inflight) && opt.inflight >= 1)) usage('--inflight must be an integer >= 1');
  if (!(opt.zipf >= 0)) usage('--zipf must be >= 0');
  return { url, clients: Number(clients), seconds: Number(seconds), mode, accounts: Number(accounts), ...opt };
}

const int = (n) => (Number.isSafeInteger(n) && n >= 0 && n < 2 ** 32 ? n : BigInt(n));
const now = () => Number(process.hrtime.bigint()) / 1e3;          // µs
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1e3));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function callReducer(rid, reducer, args) {
  return cbor.encode({ type: 'CallReducer', request_id: int(rid), reducer, args: args.map(int) });
}

// a connected client: resolves once the server's IdentityToken has arrived; then
// onMessage(decoded message, frame bytes) for each message
function connect(url, onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, SUBPROTOCOL, { perMessageDeflate: false, maxPayload: 64 << 20 });
    ws.binaryType = 'nodebuffer';
    let hello = false;
    ws.on('message', (data) => {
      const msg = cbor.decode(data);
      if (!hello) {
        if (msg.type !== 'IdentityToken') reject(new Error(`first message is ${msg.type}, not IdentityToken`));
        hello = true;
        resolve(ws);
        return;
      }
      onMessage(msg, data.length);               // the frame's size: arena_bots.js counts bytes
    });
    ws.on('error', (e) => (hello ? onMessage({ type: 'SocketError', detail: String(e) }) : reject(e)));
    ws.on('close', (code, reason) => {
      if (hello) onMessage({ type: 'Closed', code, detail: String(reason) });
      else reject(new Error(`closed before IdentityToken: ${code} ${reason}`));
    });
  });
}

// Close every socket with a close handshake and wait for the server's answer (at most 5 s): a
// connection dropped while the server still sends to it is noise in the server's log at best.
function closeAll(sockets) {
  return Promise.race([sleep(5), Promise.all(sockets.map((ws) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once('close', resolve);
    ws.close(1000, 'done');
  })))]);
}

async function connectMany(n, url, make, concurrency = 50) {
  const conns = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      conns[i] = await make(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return conns;
}

function percentile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

// Zipf(alpha) over ranks 1..n, rank k = account k: the CDF once, then a binary search per draw
// for the first rank whose cumulative probability reaches u (u uniform in (0, 1) from `uniform`).
function zipfSampler(n, alpha, uniform) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) sum += k ** -alpha;
  let acc = 0;
  for (let k = 1; k <= n; k++) {
    acc += k ** -alpha / sum;
    cdf[k - 1] = acc;
  }
  cdf[n - 1] = 1;
  return () => {
    const u = uniform();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

async function transfer(a) {
  let measuring = false;
  let stopping = false;            // after the window: send nothing new, wait for what is in flight
  let inFlight = 0;
  let drained = null;
  let messages = 0;
  let errors = 0;
  let account1 = 0;                // measured calls with account 1 at either end
  const firstErrors = [];
  const lat = [];
  let rng = 12345;
  const next32 = () => {                             // xorshift32: the same sequence every run
    rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
    return rng;
  };
  const rand = (n) => next32() % n;
  let pair;                                          // () => [from, to], from != to
  if (a.zipf > 0) {
    if (a.accounts < 2) usage('--zipf needs at least 2 accounts');
    const zipf = zipfSampler(a.accounts, a.zipf, () => next32() / 4294967296);   // in (0, 1)
    pair = () => {
      const from = zipf();
      let to = zipf();
      while (to === from) to = zipf();
      return [from, to];
    };
  } else {
    pair = () => {
      const from = 1 + rand(a.accounts);
      let to = 1 + rand(a.accounts);
      if (to === from) to = (to % a.accounts) + 1;
      return [from, to];
    };
  }
  function client(i) {
    const c = { rid: 0, ws: null, pending: new Map() };   // request id -> [send time, from, to]
    c.send = () => {
      const [from, to] = pair();
      c.rid += 1;
      c.pending.set(c.rid, [now(), from, to]);
      inFlight += 1;
      c.ws.send(callReducer(c.rid, 'transfer', [from, to, 1]));
    };
    const onMessage = (msg) => {
      if (msg.type === 'Closed' || msg.type === 'SocketError') {
        errors += 1;
        if (firstErrors.length < 5) firstErrors.push(`client ${i}: ${msg.type} ${msg.code || ''} ${msg.detail}`);
        return;
      }
      const rid = Number(msg.request_id);
      const call = c.pending.get(rid);
      if (call === undefined) return;                                     // not an answer to our call
      c.pending.delete(rid);
      const ok = msg.type === 'TransactionUpdate' && msg.status === 'committed';
      if (measuring) {
        if (ok) {
          messages += 1;
          lat.push(now() - call[0]);
          if (call[1] === 1 || call[2] === 1) account1 += 1;
        } else errors += 1;
      }
      if (!ok && firstErrors.length < 5) firstErrors.push(`client ${i}: ${JSON.stringify(msg, jsonSafe)}`);
      inFlight -= 1;
      if (!stopping) c.send();
      else if (inFlight === 0 && drained) drained();
    };
    return connect(a.url, onMessage).then((ws) => { c.ws = ws; return c; });
  }
  const clients = await connectMany(a.clients, a.url, client);
  for (const c of clients) for (let k = 0; k < a.inflight; k++) c.send();
  await sleep(a.warmup);
  messages = 0; errors = 0; account1 = 0; lat.length = 0;
  measuring = true;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  out({ event: 'start' });
  await sleep(a.seconds);
  measuring = false;
  const wall = now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const sorted = Float64Array.from(lat).sort();
  out({
    event: 'result', mode: 'transfer', loadgen: 'node', clients: a.clients, inflight: a.inflight, zipf: a.zipf,
    messages, seconds: wall / 1e6, msg_per_s: messages / (wall / 1e6), p50_us: percentile(sorted, 0.5),
    p99_us: percentile(sorted, 0.99), errors, first_errors: firstErrors, loadgen_cpu: (cpu.user + cpu.system) / wall,
    account1_share: messages ? account1 / messages : null,
  });
  stopping = true;
  await Promise.race([sleep(10), new Promise((r) => { drained = r; if (inFlight === 0) r(); })]);
  await closeAll(clients.map((c) => c.ws));
}

function jsonSafe(_k, v) {
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  return v;
}

async function fanout(a) {
  const urls = a.url.split(',');
  let trial = -1;                  // the trial being measured (-1: none)
  let trialT0 = 0;                 // when its call was sent (µs)
  let got = 0;
  let last = 0;
  let errors = 0;
  const firstErrors = [];
  let done = null;                 // resolves when every subscriber has heard of the trial
  let target = a.clients;          // the subscribers that subscribed
  const fail = (what) => { errors += 1; if (firstErrors.length < 5) firstErrors.push(what); };
  // per URL: deliveries this trial, the last one's time, every measured delivery's latency (ms)
  const per = urls.map(() => ({ got: 0, last: 0, times: [], lat: [] }));

  function subscriber(i) {
    const s = { heard: -1, applied: null, ws: null, ok: false, u: i % urls.length };
    const onMessage = (msg) => {
      if (msg.type === 'SubscribeApplied' || (msg.type === 'Error' && s.applied && msg.request_id === 1)) {
        const ok = msg.type === 'SubscribeApplied' && msg.queries.length === 1 && msg.queries[0].rows.length === 1;
        if (!ok) fail(`subscriber ${i}: ${JSON.stringify(msg, jsonSafe)}`);
        const r = s.applied; s.applied = null; r(ok);
      } else if (msg.type === 'TransactionUpdate' && msg.request_id === null && trial >= 0 && s.heard < trial) {
        s.heard = trial;
        got += 1;
        last = now();
        const p = per[s.u];
        p.got += 1;
        p.last = last;
        if (trial >= 1) p.lat.push((last - trialT0) / 1e3);
        if (got === target && done) done();
      } else if (msg.type !== 'TransactionUpdate') fail(`subscriber ${i}: ${JSON.stringify(msg, jsonSafe)}`);
    };
    return connect(urls[s.u], onMessage).then((ws) => new Promise((resolve) => {
      s.ws = ws;
      s.applied = resolve;
      ws.send(cbor.encode({ type: 'Subscribe', request_id: 1, queries: [FANOUT_SQL] }));
    }).then((ok) => { s.ok = ok; return s; }));
  }

  const t00 = now();
  const subs = await connectMany(a.clients, a.url, subscriber);
  const subscribed = subs.filter((s) => s.ok).length;
  target = subscribed;
  const connectS = (now() - t00) / 1e6;
  let callerDone = null;
  let callerRid = 0;
  let callerT = 0;
  const caller = await connect(urls[0], (msg) => {
    if (msg.request_id === callerRid && callerDone) {
      if (!(msg.type === 'TransactionUpdate' && msg.status === 'committed')) fail(`caller: ${JSON.stringify(msg, jsonSafe)}`);
      callerT = now();
      const r = callerDone; callerDone = null; r();
    }
  });
  const times = [];
  const callerTimes = [];
  const delivered = [];
  out({ event: 'start' });
  for (let t = -1; t < a.trials; t++) {            // trial -1 warms up and is not counted
    trial = t + 1;                                  // >= 0 while measuring
    got = 0;
    for (const p of per) p.got = 0;
    const all = new Promise((r) => { done = r; });
    const answered = new Promise((r) => { callerDone = r; });
    callerRid += 1;
    const t0 = now();
    trialT0 = t0;
    caller.send(callReducer(callerRid, 'transfer', [1, 2, 1]));
    const timeout = sleep(10).then(() => 'timeout');
    const r = await Promise.race([Promise.all([all, answered]), timeout]);
    done = null;
    if (r === 'timeout') fail(`trial ${t}: ${got} of ${target} subscribers heard within 10 s`);
    if (t >= 0) {
      delivered.push(got);
      if (r !== 'timeout') {
        times.push((last - t0) / 1e3);
        callerTimes.push((callerT - t0) / 1e3);
        for (const p of per) if (p.got) p.times.push((p.last - t0) / 1e3);
      }
    }
    await sleep(a.gap);
  }
  const sorted = [...times].sort((x, y) => x - y);
  const median = (xs) => (xs.length ? [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)] : null);
  const pct = (xs, q) => percentile(sortedOf(xs), q);
  const allLat = per.flatMap((p) => p.lat);
  out({
    event: 'result', mode: 'fanout', loadgen: 'node', clients: a.clients, subscribed, trials: a.trials,
    connect_seconds: connectS, median_ms: median(times), max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    min_ms: sorted.length ? sorted[0] : null, p99_ms: pct(times, 0.99), caller_median_ms: median(callerTimes),
    times_ms: times, delivered_min: delivered.length ? Math.min(...delivered) : 0,
    delivery_p50_ms: pct(allLat, 0.5), delivery_p99_ms: pct(allLat, 0.99),
    per_url: urls.map((u, k) => ({
      url: u, subscribed: subs.filter((s) => s.ok && s.u === k).length, median_ms: median(per[k].times),
      p99_ms: pct(per[k].times, 0.99), max_ms: per[k].times.length ? Math.max(...per[k].times) : null,
      delivery_p50_ms: pct(per[k].lat, 0.5), delivery_p99_ms: pct(per[k].lat, 0.99),
      deliveries: per[k].lat.length,
    })),
    errors, first_errors: firstErrors,
  });
  await closeAll([caller, ...subs.map((s) => s.ws)]);
}

// ---- soak (python -m bench.soak, issue 8)

const HIST_SCALE = 50;                 // log-spaced latency buckets ~2% wide, for "p99 so far"
const HIST_SIZE = 1200;                // up to e^24 µs
const histIndex = (us) => Math.min(HIST_SIZE - 1, Math.floor(Math.log1p(Math.max(0, us)) * HIST_SCALE));

function histPercentile(hist, total, q) {          // the upper bound of the bucket holding it, µs
  if (!total) return null;
  const k = Math.min(total - 1, Math.floor(total * q)) + 1;
  let cum = 0;
  for (let i = 0; i < HIST_SIZE; i++) {
    cum += hist[i];
    if (cum >= k) return Math.expm1((i + 1) / HIST_SCALE);
  }
  return null;
}

function sortedOf(xs) {
  return Float64Array.from(xs).sort();
}

const ms = (us) => (us === null || us === undefined ? null : us / 1e3);

async function soak(a) {
  const hot = Math.max(1, Math.min(a.hot, a.accounts));
  const hotProb = a['hot-prob'];
  let rng = 12345;
  const rand = (n) => {                              // xorshift32: the same sequence every run
    rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
    return rng % n;
  };
  const pick = () => (rand(1 << 20) < hotProb * (1 << 20) ? 1 + rand(hot) : 1 + rand(a.accounts));
  let errors = 0;
  let reconnects = 0;
  let mismatches = 0;
  const firstErrors = [];
  const fail = (what) => { errors += 1; if (firstErrors.length < 10) firstErrors.push(what.slice(0, 400)); };
  const subsOf = new Int32Array(hot + 1);           // subscribed clients per hot account
  const calls = new Map();        // request id -> call, until answered and every diff of it delivered
  const byOffset = new Map();     // commit offset -> answered call with diffs still to come
  const early = new Map();        // commit offset -> receive times of diffs that beat the caller's answer
  let measuring = false;
  let stopping = false;
  let closing = false;
  let drained = null;
  const fresh = () => ({
    sent: 0, answered: 0, committed: 0, expected: 0, delivered: 0, lat: [], callLat: [], interval: [],
    hist: new Float64Array(HIST_SIZE), maxInFlight: 0, secMax: [], secCount: [],
  });
  let tWin = 0;                   // when the measured window started (µs)
  let m = fresh();

  function maybeDone(rec) {
    if (!rec.answered || rec.got < rec.expect) return;
    if (rec.got > rec.expect && !rec.extra) {
      rec.extra = true;
      fail(`call ${rec.rid} (offset ${rec.offset}): ${rec.got} diffs delivered, ${rec.expect} expected`);
    }
    calls.delete(rec.rid);
    if (rec.offset !== null) byOffset.delete(rec.offset);
    if (stopping && calls.size === 0 && drained) drained();
  }

  function deliver(rec, t) {
    rec.got += 1;
    if (rec.measured) {
      const us = t - rec.t0;
      m.delivered += 1;
      const sec = Math.max(0, Math.floor((t - tWin) / 1e6));  // per second of the window: worst latency
      while (m.secMax.length <= sec) { m.secMax.push(0); m.secCount.push(0); }
      if (us > m.secMax[sec]) m.secMax[sec] = us;
      m.secCount[sec] += 1;
      m.lat.push(us);
      m.interval.push(us);
      m.hist[histIndex(us)] += 1;
    }
    maybeDone(rec);
  }

  function subscriber(i) {
    const acct = (i % hot) + 1;
    const s = { i, acct, ws: null, row: null, lastOffset: -1, live: false, applied: null };
    const rowKey = (r) => JSON.stringify(r, jsonSafe);
    const onMessage = (msg) => {
      const t = now();
      if (msg.type === 'TransactionUpdate' && msg.request_id === null) {
        const off = Number(msg.offset);
        const u = msg.updates;
        if (!(off > s.lastOffset) || u.length !== 1 || u[0].deletes.length !== 1 || u[0].inserts.length !== 1 ||
            rowKey(u[0].deletes[0]) !== rowKey(s.row) || Number(u[0].inserts[0][0]) !== acct) {
          mismatches += 1;
          fail(`subscriber ${i} (account ${acct}, row ${rowKey(s.row)}, last offset ${s.lastOffset}): ` +
               `unexpected diff ${JSON.stringify(msg, jsonSafe)}`);
        }
        s.lastOffset = off;
        if (u.length === 1 && u[0].inserts.length === 1) s.row = u[0].inserts[0];
        const rec = byOffset.get(off);
        if (rec) deliver(rec, t);
        else {
          let l = early.get(off);
          if (!l) early.set(off, (l = []));
          l.push(t);
        }
      } else if (msg.type === 'SubscribeApplied' && s.applied) {
        const ok = msg.queries.length === 1 && msg.queries[0].rows.length === 1;
        if (ok) {
          s.row = msg.queries[0].rows[0];
          s.live = true;
          subsOf[acct] += 1;
        } else fail(`subscriber ${i}: ${JSON.stringify(msg, jsonSafe)}`);
        const r = s.applied; s.applied = null; r(s);
      } else if (msg.type === 'Closed') {
        if (closing) return;
        if (s.live) { s.live = false; subsOf[acct] -= 1; }
        fail(`subscriber ${i}: closed by the server: ${msg.code} ${msg.detail}`);
        if (s.applied) { const r = s.applied; s.applied = null; r(s); }
        if (!stopping) { reconnects += 1; sleep(1).then(open).catch((e) => fail(`subscriber ${i}: reconnect: ${e}`)); }
      } else {
        fail(`subscriber ${i}: ${JSON.stringify(msg, jsonSafe)}`);
        if (s.applied) { const r = s.applied; s.applied = null; r(s); }
      }
    };
    const open = () => connect(a.url, onMessage).then((ws) => new Promise((resolve) => {
      s.ws = ws;
      s.lastOffset = -1;
      s.applied = resolve;
      ws.send(cbor.encode({ type: 'Subscribe', request_id: 1,
                            queries: [`SELECT * FROM account WHERE id = ${acct}`] }));
    }));
    return open();
  }

  function caller(k) {
    const c = { k, ws: null, live: false };
    const onMessage = (msg) => {
      const t = now();
      if (msg.type === 'Closed') {
        if (closing) return;
        c.live = false;
        fail(`caller ${k}: closed by the server: ${msg.code} ${msg.detail}`);
        if (!stopping) { reconnects += 1; sleep(1).then(open).catch((e) => fail(`caller ${k}: reconnect: ${e}`)); }
        return;
      }
      const rec = msg.request_id === null || msg.request_id === undefined ? null : calls.get(Number(msg.request_id));
      if (!rec || rec.answered) { fail(`caller ${k}: ${JSON.stringify(msg, jsonSafe)}`); return; }
      rec.answered = true;
      if (rec.measured) { m.answered += 1; m.callLat.push(t - rec.t0); }
      if (msg.type !== 'TransactionUpdate' || msg.status !== 'committed' || msg.offset === null) {
        fail(`caller ${k}: ${JSON.stringify(msg, jsonSafe)}`);
        rec.expect = 0;
        maybeDone(rec);
        return;
      }
      if (rec.measured) m.committed += 1;
      rec.offset = Number(msg.offset);
      byOffset.set(rec.offset, rec);
      const l = early.get(rec.offset);
      if (l) {
        early.delete(rec.offset);
        for (const te of l) deliver(rec, te);
      }
      maybeDone(rec);
    };
    const open = () => connect(a.url, onMessage).then((ws) => { c.ws = ws; c.live = true; return c; });
    return open();
  }

  const t00 = now();
  const subs = await connectMany(a.clients, a.url, subscriber);
  const callers = await connectMany(a.callers, a.url, caller);
  const subscribed = subs.filter((s) => s.live).length;
  out({ event: 'ready', clients: a.clients, subscribed, connect_seconds: (now() - t00) / 1e6 });

  let rid = 0;
  let sent = 0;
  let next = 0;
  const tLoad = now();
  const tick = () => {                              // open loop: every call due by now goes out
    const due = Math.floor(((now() - tLoad) * a.rate) / 1e6);
    while (sent < due && !stopping) {
      sent += 1;
      let c = null;
      for (let j = 0; j < callers.length && !c; j++) {
        const x = callers[(next + j) % callers.length];
        if (x.live) { c = x; next = (next + j + 1) % callers.length; }
      }
      if (!c) continue;                               // every caller is reconnecting (already an error)
      const from = pick();
      let to = pick();
      if (to === from) to = (to % a.accounts) + 1;
      rid += 1;
      const expect = (from <= hot ? subsOf[from] : 0) + (to <= hot ? subsOf[to] : 0);
      const rec = { rid, t0: now(), expect, got: 0, offset: null, answered: false, measured: measuring,
                    extra: false };
      calls.set(rid, rec);
      if (measuring) { m.sent += 1; m.expected += expect; }
      c.ws.send(callReducer(rid, 'transfer', [from, to, 1]));
    }
    if (calls.size > m.maxInFlight) m.maxInFlight = calls.size;
  };
  const sender = setInterval(tick, 1);
  await sleep(a.warmup);

  m = fresh();
  measuring = true;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  tWin = t0;
  out({ event: 'start' });
  let cpuLast = process.cpuUsage();
  let tLast = t0;
  const progress = setInterval(() => {
    const t = now();
    const cpu = process.cpuUsage(cpuLast);
    const iv = sortedOf(m.interval);
    out({
      event: 'progress', elapsed_s: (t - t0) / 1e6, sent: m.sent, answered: m.answered, committed: m.committed,
      delivered: m.delivered, expected: m.expected, in_flight: calls.size, errors, reconnects,
      p99_ms: ms(histPercentile(m.hist, m.delivered, 0.99)), interval_p50_ms: ms(percentile(iv, 0.5)),
      interval_p99_ms: ms(percentile(iv, 0.99)), interval_max_ms: iv.length ? ms(iv[iv.length - 1]) : null,
      loadgen_cpu: (cpu.user + cpu.system) / (t - tLast),
    });
    m.interval = [];
    cpuLast = process.cpuUsage();
    tLast = t;
  }, a.progress * 1e3);
  await sleep(a.seconds);
  measuring = false;
  stopping = true;
  clearInterval(sender);
  clearInterval(progress);
  const wall = now() - t0;
  const cpu = process.cpuUsage(cpu0);
  out({ event: 'stop' });
  await Promise.race([sleep(a.drain), new Promise((r) => { drained = r; if (calls.size === 0) r(); })]);
  let unanswered = 0;
  let missing = 0;
  for (const rec of calls.values()) {
    if (!rec.measured) continue;
    if (!rec.answered) unanswered += 1;
    else missing += Math.max(0, rec.expect - rec.got);
  }
  let unmatched = 0;
  for (const l of early.values()) unmatched += l.length;
  if (unanswered) fail(`${unanswered} calls unanswered ${a.drain} s after the load stopped`);
  if (missing) fail(`${missing} diffs not delivered ${a.drain} s after the load stopped`);
  if (unmatched) fail(`${unmatched} diffs with an offset no call's answer carried`);
  const lat = sortedOf(m.lat);
  const cl = sortedOf(m.callLat);
  out({
    event: 'result', mode: 'soak', loadgen: 'node', clients: a.clients, subscribed, callers: a.callers,
    rate: a.rate, hot, hot_prob: hotProb, seconds: wall / 1e6, warmup: a.warmup,
    calls_sent: m.sent, calls_answered: m.answered, calls_committed: m.committed,
    calls_per_s: m.committed / (wall / 1e6), calls_unanswered: unanswered,
    diffs_expected: m.expected, diffs_delivered: m.delivered, diffs_missing: missing, diffs_unmatched: unmatched,
    diff_mismatches: mismatches, diff_p50_ms: ms(percentile(lat, 0.5)), diff_p99_ms: ms(percentile(lat, 0.99)),
    diff_p999_ms: ms(percentile(lat, 0.999)), diff_max_ms: lat.length ? ms(lat[lat.length - 1]) : null,
    call_p50_ms: ms(percentile(cl, 0.5)), call_p99_ms: ms(percentile(cl, 0.99)),
    call_max_ms: cl.length ? ms(cl[cl.length - 1]) : null, max_in_flight: m.maxInFlight,
    errors, reconnects, first_errors: firstErrors, loadgen_cpu: (cpu.user + cpu.system) / wall,
    per_second: { max_ms: m.secMax.map((x) => Math.round(x) / 1e3), diffs: m.secCount },
  });
  closing = true;
  await closeAll([...subs.map((s) => s.ws), ...callers.map((c) => c.ws)]);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.mode === 'transfer') await transfer(a);
  else if (a.mode === 'soak') await soak(a);
  else await fanout(a);
  process.exit(0);
}

// the helpers bench/loadgen/arena_bots.js shares; run as a program only when started as one
module.exports = { SUBPROTOCOL, cbor, connect, closeAll, connectMany, percentile, jsonSafe, now, sleep, out,
  parseOptions };

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`load.js: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  });
}
