// Reconnecting: the server is stopped and started again on the same port and data directory;
// the client keeps its identity, calls made meanwhile fail at once, and on resubscribing exactly
// the missed insert / delete / update callbacks fire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WS from 'ws';
import { connect, memoryStorage, ConnectionLost } from '../src/index.js';
import { startServer, exampleWasm, tempDir } from './server.js';

// a WebSocket whose connections fail while `gate.closed` (to hold the client off until the test
// has made the changes it must catch up on): it connects to a port nothing listens on
const gate = { closed: false, attempts: 0 };
class GatedWebSocket extends WS {
  constructor(url, protocols, options) {
    gate.attempts += 1;
    super(gate.closed ? 'ws://127.0.0.1:9/v1/database/none' : url, protocols, options);
  }
}

const once = (conn, kind) => new Promise((resolve) => { const off = conn[kind]((...a) => { off(); resolve(a); }); });

test('reconnect after a server restart: same identity, calls fail while down, missed callbacks fire', async () => {
  const data = tempDir();
  let server = await startServer(data);
  const port = server.port;
  const base = { url: server.url, database: 'chat', reconnect: false };
  const publisher = await connect({ ...base, storage: memoryStorage() });
  await publisher.publish(exampleWasm('chat'));
  await publisher.close();
  const owner = await connect({ ...base, token: publisher.token, storage: null }); // now client_connected runs
  assert.ok((await owner.call('set_name', 'ann')).ok);
  for (const t of ['one', 'two', 'three']) assert.ok((await owner.call('send_message', t)).ok);
  const ownerToken = owner.token;

  const bob = await connect({ ...base, storage: memoryStorage(), WebSocket: GatedWebSocket,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  const identity = bob.identityHex;
  await bob.subscribe('SELECT * FROM message', 'SELECT * FROM user').applied;
  const log = [];
  bob.onInsert('message', (r) => log.push(['insert', r.text]));
  bob.onDelete('message', (r) => log.push(['delete', r.text]));
  bob.onUpdate('message', (o, n) => log.push(['update', o.text, n.text]));
  bob.onUpdate('user', (o, n) => log.push(['user', o.name, n.name, o.online, n.online]));
  bob.onInsert('user', (r) => log.push(['user+', r.name]));
  bob.onDelete('user', (r) => log.push(['user-', r.name]));

  const disconnected = once(bob, 'onDisconnect');
  await owner.close();
  await bob.call('set_name', 'bob'); // bob's own row: set before the restart, unchanged after
  log.length = 0;
  gate.closed = true;
  await server.stop();
  const [reason] = await disconnected;
  assert.match(reason, /^1001/);
  assert.equal(bob.state, 'reconnecting');
  await assert.rejects(bob.call('send_message', 'lost'), ConnectionLost);

  server = await startServer(data, port);
  // changes bob misses: an insert, a delete, an update of a message (owner DML), a user renamed
  const owner2 = await connect({ ...base, token: ownerToken, storage: null });
  assert.equal(owner2.identityHex, owner.identityHex);
  assert.ok((await owner2.call('send_message', 'four')).ok);
  await owner2.query("DELETE FROM message WHERE text = 'one'");
  await owner2.query("UPDATE message SET text = 'TWO' WHERE text = 'two'");
  assert.ok((await owner2.call('set_name', 'anna')).ok);
  const attemptsBefore = gate.attempts;
  const reconnected = once(bob, 'onReconnect');
  gate.closed = false;
  await reconnected;
  assert.ok(gate.attempts > attemptsBefore);
  assert.equal(bob.state, 'connected');
  assert.equal(bob.identityHex, identity);
  log.sort((a, b) => a.join().localeCompare(b.join()));
  assert.deepEqual(log, [
    ['delete', 'one'],
    ['insert', 'four'],
    ['update', 'two', 'TWO'],
    ['user', 'ann', 'anna', false, true], // ann went offline before the restart,
  ]);
  const texts = bob.table('message').rows().map((r) => r.text).sort();
  assert.deepEqual(texts, ['TWO', 'four', 'three']);
  // live again: updates flow and calls work
  const got = new Promise((resolve) => bob.onInsert('message', (r) => { if (r.text === 'five') resolve(r); }));
  assert.ok((await owner2.call('send_message', 'five')).ok);
  await got;
  assert.ok((await bob.call('send_message', 'back')).ok);
  assert.equal(bob.table('message').count(), 5);
  await bob.close();
  await owner2.close();
  await server.stop();
});

test('a server that stays down: the back-off grows to its bound, one onDisconnect, close() stops it', async () => {
  const server = await startServer(tempDir());
  const delays = [];
  let enough;
  const eight = new Promise((resolve) => { enough = resolve; });
  const conn = await connect({ url: server.url, database: 'chat', storage: null,
    reconnect: { initialDelayMs: 50, maxDelayMs: 400, onRetry: (n, d) => { delays.push([n, d]); if (delays.length === 8) enough(); } } });
  const reasons = [];
  conn.onDisconnect((r) => reasons.push(r));
  await server.stop();
  await eight;
  assert.equal(conn.state, 'reconnecting');
  await conn.close();
  assert.equal(conn.state, 'closed');
  const atClose = delays.length;
  assert.deepEqual(delays.map(([n]) => n), [...Array(atClose).keys()].map((i) => i + 1));
  for (const [n, d] of delays) {
    const bound = Math.min(400, 50 * 2 ** (n - 1));
    assert.ok(d >= bound / 2 && d <= bound, `attempt ${n}: ${d} ms`);
  }
  assert.deepEqual(delays.slice(0, 5).map(([n]) => Math.min(400, 50 * 2 ** (n - 1))), [50, 100, 200, 400, 400]);
  assert.equal(reasons.length, 1);
  // closed: no further attempt (long against the 400 ms bound; only an attempt after close fails it)
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(delays.length, atClose);
});
