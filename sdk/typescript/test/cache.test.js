// The client cache against a real server: equal to a fresh query after random reducer calls,
// rows as objects with bigints, update callbacks fired after the cache changed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, memoryStorage, toHex, toDate } from '../src/index.js';
import { startServer, exampleWasm } from './server.js';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

const opts = (extra = {}) => ({ url: server.url, database: 'chat', storage: memoryStorage(), reconnect: false, ...extra });

// the rows of `table` in the cache and in a fresh one-off query, both as sorted text
async function cacheAndQuery(conn, table) {
  const show = (r) => JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? toHex(v) : v));
  const cached = conn.table(table).rows().map((r) => show(Object.values(r))).sort();
  const q = await conn.query(`SELECT * FROM ${table}`);
  return [cached, q.rows.map(show).sort()];
}

test('the cache equals a fresh query after random reducer calls from two clients', async () => {
  const owner = await connect(opts());
  await owner.publish(exampleWasm('chat'));
  const bob = await connect(opts());
  const sub = bob.subscribe('SELECT * FROM message', 'SELECT * FROM user');
  assert.equal(await sub.applied, sub);
  assert.equal(sub.queryIds.length, 2);
  let seed = 12345;
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  for (let i = 0; i < 40; i++) {
    const who = rand(2) ? owner : bob;
    const what = rand(3);
    const outcome = what === 0 ? await who.call('set_name', rand(4) ? `name${rand(5)}` : '')
      : await who.call('send_message', rand(6) ? `hello ${i}` : '');
    assert.ok(outcome.ok || outcome.message.endsWith('must not be empty'), outcome.message);
  }
  await bob.call('set_name', 'bob'); // answered after every earlier commit's update reached bob
  const [cached, fresh] = await cacheAndQuery(bob, 'message');
  assert.deepEqual(cached, fresh);
  assert.ok(cached.length > 5);
  const [cu, fu] = await cacheAndQuery(bob, 'user');
  assert.deepEqual(cu, fu);
  const m = bob.table('message').rows()[0];
  assert.equal(typeof m.id, 'bigint');
  assert.equal(typeof m.sent, 'bigint');
  assert.ok(m.sender instanceof Uint8Array && m.sender.length === 32);
  assert.ok(Math.abs(toDate(m.sent).getTime() - Date.now()) < 3600e3);
  const me = bob.table('user').find(bob.identity);
  assert.equal(me.name, 'bob');
  assert.equal(me.online, true);
  assert.equal(bob.table('message').find(m.id), m);
  assert.equal(bob.table('message').find(Number(m.id)), m);
  await sub.unsubscribe();
  assert.equal(bob.table('message').count(), 0);
  await bob.close();
  await owner.close();
});

test('callbacks: update (old, new, event) after the cache changed; insert for the caller before call returns', async () => {
  const alice = await connect(opts());
  const bob = await connect(opts());
  const seen = [];
  bob.onUpdate('user', (old, neu, ev) => {
    assert.equal(ev.caller.constructor, Uint8Array);
    seen.push(['update', old.name, neu.name, ev.reducer, toHex(ev.caller)]);
    assert.equal(bob.table('user').find(neu.id), neu); // the cache is already updated
  });
  bob.onInsert('message', (row, ev) => seen.push(['insert', row.text, ev.reducer, ev.requestId !== null]));
  bob.onDelete('message', (row) => seen.push(['delete', row.text]));
  await bob.subscribe('SELECT * FROM user', 'SELECT * FROM message WHERE text = \'x\'').applied;
  seen.length = 0;
  assert.ok((await alice.call('set_name', 'alice')).ok);
  assert.ok((await alice.call('set_name', 'alicia')).ok);
  const own = await bob.call('send_message', 'x');
  assert.ok(own.ok);
  assert.equal(typeof own.timestamp, 'bigint');
  // bob's own call is answered after the updates of alice's two commits
  assert.deepEqual(seen, [
    ['update', '', 'alice', 'set_name', alice.identityHex],
    ['update', 'alice', 'alicia', 'set_name', alice.identityHex],
    ['insert', 'x', 'send_message', true],
  ]);
  await alice.close();
  await bob.close();
});
