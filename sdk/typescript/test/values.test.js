// Values over the wire (the transfer example's u64 ids and i64 balances) and clear errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  connect, memoryStorage, fromHex, toHex, toDate, fromDate, StdbError, QueryError, ReducerError, AuthError,
  ConnectionLost, ProtocolError,
} from '../src/index.js';
import WS from 'ws';
import { Decoder } from 'cbor-x';
import { startServer, exampleWasm } from './server.js';

let server;
let conn;
before(async () => {
  server = await startServer();
  conn = await connect({ url: server.url, database: 'bank', storage: memoryStorage(), reconnect: false });
  await conn.publish(exampleWasm('transfer'));
});
after(async () => {
  await conn?.close();
  await server?.stop();
});

const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });
const U64_MAX = 2n ** 64n - 1n;
const I64_MAX = 2n ** 63n - 1n;

test('u64 / i64 values round-trip exactly as bigints (cache, query, callbacks)', async () => {
  const inserted = [];
  conn.onInsert('account', (row) => inserted.push(row));
  await conn.subscribe('SELECT * FROM account').applied;
  for (const [id, balance] of [[U64_MAX, I64_MAX], [2n ** 53n + 1n, 2n ** 53n + 1n], [1n, 0n], [7, 100], [2 ** 40, 5]]) {
    const out = await conn.call('create_account', id, balance);
    assert.equal(out.status, 'committed', out.message);
  }
  assert.deepEqual(inserted.map((r) => r.id), [U64_MAX, 2n ** 53n + 1n, 1n, 7n, 2n ** 40n]);
  const top = conn.table('account').find(U64_MAX);
  assert.deepEqual(top, { id: U64_MAX, balance: I64_MAX });
  assert.equal(conn.table('account').find(7).balance, 100n);
  const q = await conn.query(`SELECT * FROM account WHERE id = ${U64_MAX}`);
  assert.deepEqual(q.columns, ['id', 'balance']);
  assert.deepEqual(q.rows, [[U64_MAX, I64_MAX]]);
  assert.deepEqual(q.types, ['u64', 'i64']);
  // aggregates and aliases: typed by the server's `types`, so small counts are bigints too
  const agg = await conn.query('SELECT COUNT(*) AS n, MIN(balance) AS low FROM account WHERE id = 7');
  assert.deepEqual(agg.types, ['u64', 'i64']);
  assert.deepEqual(agg.rows, [[1n, 100n]]);
  const updates = [];
  conn.onUpdate('account', (o, n, ev) => updates.push([o.id, o.balance, n.balance, ev.reducer]));
  assert.ok((await conn.call('transfer', 2n ** 53n + 1n, 1n, 2n ** 53n)).ok);
  updates.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  assert.deepEqual(updates, [[1n, 0n, 2n ** 53n, 'transfer'], [2n ** 53n + 1n, 2n ** 53n + 1n, 1n, 'transfer']]);
});

test('a reducer that fails: an outcome with its message; raiseForStatus throws ReducerError', async () => {
  const out = await conn.call('transfer', 1n, 7n, 10n ** 18n);
  assert.equal(out.ok, false);
  assert.equal(out.status, 'failed');
  assert.equal(out.message, 'insufficient funds');
  assert.throws(() => out.raiseForStatus(), (e) => e instanceof ReducerError && e.reducerMessage === 'insufficient funds'
    && /reducer 'transfer' failed: insufficient funds/.test(e.message));
});

test('requests the server cannot run reject with its error, naming the problem', async () => {
  await assert.rejects(conn.call('no_such_reducer', 1), (e) => e instanceof StdbError && /no_such_reducer/.test(e.message));
  await assert.rejects(conn.call('transfer', 'one', 2n, 3n), (e) => e instanceof StdbError && e.code !== 'stdb_error' && /transfer|from|u64/.test(e.message));
  await assert.rejects(conn.call('transfer', 1n), (e) => e instanceof StdbError && /takes 3 arguments \(from: u64, to: u64, amount: i64\); 1 given/.test(e.message));
  await assert.rejects(conn.query('SELEKT * FROM account'), (e) => e instanceof QueryError && e.code === 'query_error');
  await assert.rejects(conn.query('SELECT * FROM nowhere'), (e) => e instanceof StdbError && /nowhere/.test(e.message));
  const sub = conn.subscribe('SELECT * FROM nowhere');
  await assert.rejects(sub.applied, /nowhere/);
  assert.equal(sub.active, false);
  assert.ok((await conn.call('create_account', 99n, 1n)).ok); // the connection goes on
});

test('a bad token is refused with AuthError; a closed connection fails calls at once', async () => {
  await assert.rejects(connect({ url: server.url, database: 'bank', token: 'not-a-token', storage: null, reconnect: false }),
    (e) => e instanceof AuthError && /token/.test(e.message));
  await assert.rejects(connect({ url: 'http://x', database: 'bank', storage: null }), (e) => e.code === 'bad_url');
  await assert.rejects(connect({ url: server.url, database: 'bank', maxMessage: 10, storage: null }), ProtocolError);
  const c = await connect({ url: server.url, database: 'bank', storage: null, reconnect: false });
  await c.close();
  await assert.rejects(c.call('transfer', 1n, 2n, 3n), ConnectionLost);
  await assert.rejects(connect({ url: 'ws://127.0.0.1:9', database: 'bank', storage: null }), ConnectionLost);
});

test('tokens are saved to the storage and give the same identity next time', async () => {
  const storage = memoryStorage();
  const a = await connect({ url: server.url, database: 'bank', storage, reconnect: false });
  await a.close();
  const b = await connect({ url: server.url, database: 'bank', storage, reconnect: false });
  assert.equal(b.identityHex, a.identityHex);
  assert.equal(b.identityHex.length, 64);
  assert.deepEqual(fromHex(b.identityHex), b.identity);
  await b.close();
  assert.equal(toHex(fromHex('0x00ff10')), '00ff10');
  assert.throws(() => fromHex('xyz'), /not hex/);
  assert.equal(toDate(fromDate(new Date(1700000000123))).getTime(), 1700000000123);
});

// a WebSocket that counts the parts (messages with `more` true) it receives
let partsSeen = 0;
class CountingWebSocket extends WS {
  constructor(...a) {
    super(...a);
    this.addEventListener('message', (e) => { if (decoder.decode(new Uint8Array(e.data)).more === true) partsSeen += 1; });
  }
}

test('results larger than maxMessage arrive in parts and are put together', async () => {
  const small = await connect({ url: server.url, database: 'bank', storage: null, reconnect: false,
    maxMessage: 64 << 10, WebSocket: CountingWebSocket });
  await small.subscribe('SELECT * FROM account').applied;
  const before = small.table('account').count();
  const n = 2000;
  for (const base of [2n ** 42n, 2n ** 43n]) { // owner DML: one transaction of 2,000 rows each
    const values = Array.from({ length: n }, (_, i) => `(${base + BigInt(i)}, ${base})`).join(',');
    await conn.query(`INSERT INTO account (id, balance) VALUES ${values}`);
  }
  await small.call('create_account', 5n, 5n);
  const total = before + 2 * n + 1;
  assert.equal(small.table('account').count(), total);
  assert.equal(small.table('account').find(2n ** 43n + 7n).balance, 2n ** 43n);
  partsSeen = 0;
  const q = await small.query('SELECT * FROM account');
  assert.equal(q.rows.length, total);
  assert.ok(partsSeen >= 1, 'the query result came in parts');
  partsSeen = 0;
  const fresh = await connect({ url: server.url, database: 'bank', storage: null, reconnect: false,
    maxMessage: 64 << 10, WebSocket: CountingWebSocket });
  await fresh.subscribe('SELECT * FROM account').applied;
  assert.ok(partsSeen >= 1, 'the subscription rows came in parts');
  assert.equal(fresh.table('account').count(), total);
  await fresh.close();
  await small.close();
});
