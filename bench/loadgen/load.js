#!/usr/bin/env node
// Load generator of `python -m bench.network` (issue 7): websocket clients speaking stdb's CBOR
// protocol (docs/protocol.md), one Node process, one core.
//
//   node load.js URL CLIENTS SECONDS MODE ACCOUNTS [--warmup S] [--trials N] [--gap S]
//
// MODE transfer: CLIENTS closed-loop clients, each sending CallReducer transfer(from, to, 1) and
//   waiting for the TransactionUpdate answering it (same request_id) before sending the next.
//   After --warmup seconds, prints {"event":"start"}, measures SECONDS seconds, then prints one
//   JSON result line: {clients, messages, seconds, msg_per_s, p50_us, p99_us, errors, loadgen_cpu}.
// MODE fanout: CLIENTS clients each Subscribe to `SELECT * FROM account WHERE id = 1`; one more
//   client calls transfer(1, 2, 1) --trials times, --gap seconds apart; each trial is the time from
//   sending the call to the last subscriber receiving its TransactionUpdate.
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
                       '[--warmup S] [--trials N] [--gap S]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const pos = [];
  const opt = { warmup: 1, trials: 20, gap: 0.05 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      const k = argv[i].slice(2);
      if (!(k in opt) || i + 1 >= argv.length) usage(`bad option ${argv[i]}`);
      opt[k] = Number(argv[++i]);
    } else pos.push(argv[i]);
  }
  if (pos.length !== 5) usage('five positional arguments expected');
  const [url, clients, seconds, mode, accounts] = pos;
  if (mode !== 'transfer' && mode !== 'fanout') usage(`unknown mode ${mode}`);
  return { url, clients: Number(clients), seconds: Number(seconds), mode, accounts: Number(accounts), ...opt };
}

const int = (n) => (Number.isSafeInteger(n) && n >= 0 && n < 2 ** 32 ? n : BigInt(n));
const now = () => Number(process.hrtime.bigint()) / 1e3;          // µs
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1e3));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function callReducer(rid, reducer, args) {
  return cbor.encode({ type: 'CallReducer', request_id: int(rid), reducer, args: args.map(int) });
}

// a connected client: resolves once the server's IdentityToken has arrived
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
      onMessage(msg);
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

async function transfer(a) {
  let measuring = false;
  let stopping = false;            // after the window: send nothing new, wait for what is in flight
  let inFlight = 0;
  let drained = null;
  let messages = 0;
  let errors = 0;
  const firstErrors = [];
  const lat = [];
  let rng = 12345;
  const rand = (n) => {                              // xorshift32: the same sequence every run
    rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
    return rng % n;
  };
  function client(i) {
    const c = { rid: 0, sent: 0, ws: null };
    c.send = () => {
      const from = 1 + rand(a.accounts);
      let to = 1 + rand(a.accounts);
      if (to === from) to = (to % a.accounts) + 1;
      c.rid += 1;
      c.sent = now();
      inFlight += 1;
      c.ws.send(callReducer(c.rid, 'transfer', [from, to, 1]));
    };
    const onMessage = (msg) => {
      if (msg.type === 'Closed' || msg.type === 'SocketError') {
        errors += 1;
        if (firstErrors.length < 5) firstErrors.push(`client ${i}: ${msg.type} ${msg.code || ''} ${msg.detail}`);
        return;
      }
      if (msg.request_id !== c.rid && msg.request_id !== BigInt(c.rid)) return;   // not our answer
      const ok = msg.type === 'TransactionUpdate' && msg.status === 'committed';
      if (measuring) {
        if (ok) {
          messages += 1;
          lat.push(now() - c.sent);
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
  for (const c of clients) c.send();
  await sleep(a.warmup);
  messages = 0; errors = 0; lat.length = 0;
  measuring = true;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  out({ event: 'start' });
  await sleep(a.seconds);
  measuring = false;
  const wall = now() - t0;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((x, y) => x - y);
  out({
    event: 'result', mode: 'transfer', loadgen: 'node', clients: a.clients, messages, seconds: wall / 1e6,
    msg_per_s: messages / (wall / 1e6), p50_us: percentile(lat, 0.5), p99_us: percentile(lat, 0.99),
    errors, first_errors: firstErrors, loadgen_cpu: (cpu.user + cpu.system) / wall,
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
  let trial = -1;                  // the trial being measured (-1: none)
  let got = 0;
  let last = 0;
  let errors = 0;
  const firstErrors = [];
  let done = null;                 // resolves when every subscriber has heard of the trial
  let target = a.clients;          // the subscribers that subscribed
  const fail = (what) => { errors += 1; if (firstErrors.length < 5) firstErrors.push(what); };

  function subscriber(i) {
    const s = { heard: -1, applied: null, ws: null, ok: false };
    const onMessage = (msg) => {
      if (msg.type === 'SubscribeApplied' || (msg.type === 'Error' && s.applied && msg.request_id === 1)) {
        const ok = msg.type === 'SubscribeApplied' && msg.queries.length === 1 && msg.queries[0].rows.length === 1;
        if (!ok) fail(`subscriber ${i}: ${JSON.stringify(msg, jsonSafe)}`);
        const r = s.applied; s.applied = null; r(ok);
      } else if (msg.type === 'TransactionUpdate' && msg.request_id === null && trial >= 0 && s.heard < trial) {
        s.heard = trial;
        got += 1;
        last = now();
        if (got === target && done) done();
      } else if (msg.type !== 'TransactionUpdate') fail(`subscriber ${i}: ${JSON.stringify(msg, jsonSafe)}`);
    };
    return connect(a.url, onMessage).then((ws) => new Promise((resolve) => {
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
  const caller = await connect(a.url, (msg) => {
    if (msg.request_id === callerRid && callerDone) {
      if (!(msg.type === 'TransactionUpdate' && msg.status === 'committed')) fail(`caller: ${JSON.stringify(msg, jsonSafe)}`);
      callerT = now();
      const r = callerDone; callerDone = null; r();
    }
  });
  const times = [];
  const callerTimes = [];
  const delivered = [];
  for (let t = -1; t < a.trials; t++) {            // trial -1 warms up and is not counted
    trial = t + 1;                                  // >= 0 while measuring
    got = 0;
    const all = new Promise((r) => { done = r; });
    const answered = new Promise((r) => { callerDone = r; });
    callerRid += 1;
    const t0 = now();
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
      }
    }
    await sleep(a.gap);
  }
  const sorted = [...times].sort((x, y) => x - y);
  const median = (xs) => (xs.length ? [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)] : null);
  out({
    event: 'result', mode: 'fanout', loadgen: 'node', clients: a.clients, subscribed, trials: a.trials,
    connect_seconds: connectS, median_ms: median(times), max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    min_ms: sorted.length ? sorted[0] : null, caller_median_ms: median(callerTimes), times_ms: times,
    delivered_min: delivered.length ? Math.min(...delivered) : 0, errors, first_errors: firstErrors,
  });
  await closeAll([caller, ...subs.map((s) => s.ws)]);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.mode === 'transfer') await transfer(a);
  else await fanout(a);
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`load.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
