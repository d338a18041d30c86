// The SDK on the platform's WebSocket (the browser code path), and a module update that ends
// every subscription (the client subscribes again by itself).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, memoryStorage } from '../src/index.js';
import { startServer, exampleWasm } from './server.js';

let server;
let owner;
before(async () => {
  server = await startServer();
  const publisher = await connect({ url: server.url, database: 'chat', storage: null, reconnect: false });
  await publisher.publish(exampleWasm('chat'));
  await publisher.close();
  owner = await connect({ url: server.url, database: 'chat', token: publisher.token, storage: null, reconnect: false });
});
after(async () => {
  await owner?.close();
  await server?.stop();
});

test('the global WebSocket (as in browsers) works: connect, subscribe, call, refusal', async () => {
  const script = new URL('./fixtures/global-websocket.mjs', import.meta.url).pathname;
  const { stdout } = await promisify(execFile)(process.execPath, ['--experimental-websocket', script, server.url]);
  const out = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(out.ok, true);
  assert.deepEqual(out.rows, ['from the global WebSocket']);
  assert.equal(out.identity.length, 64);
  assert.ok(out.refused, 'a bad token is refused (the browser path cannot read why)');
});

test('a module update: the client subscribes again and fires only the differences', async () => {
  const errors = [];
  let connected = null;
  const bob = await connect({ url: server.url, database: 'chat', storage: memoryStorage(), reconnect: false,
    onConnect: (c, identity) => { connected = identity; }, onError: (e) => errors.push(e.code) });
  assert.equal(connected, bob.identity);
  await bob.subscribe('SELECT * FROM message').applied;
  const before = bob.table('message').count();
  const log = [];
  bob.onInsert('message', (r) => log.push(r.text));
  bob.onDelete('message', (r) => log.push(`-${r.text}`));
  const resubscribed = new Promise((resolve) => bob.onError((e) => { if (e.code === 'resubscribe') resolve(); }));
  await owner.publish(exampleWasm('chat'));
  await resubscribed;
  assert.ok((await owner.call('send_message', 'after the update')).ok);
  assert.ok((await bob.call('send_message', 'bob too')).ok);
  assert.deepEqual(log, ['after the update', 'bob too']); // no delete + insert of the rows it had
  assert.equal(bob.table('message').count(), before + 2);
  assert.deepEqual(errors, ['resubscribe']);
  await bob.close();
});

test('a subscription the server refuses after an update is dropped (onError), the others go on', async () => {
  const bob = await connect({ url: server.url, database: 'chat', storage: memoryStorage(), reconnect: false });
  const good = bob.subscribe('SELECT * FROM message');
  const bad = bob.subscribe('SELECT * FROM user WHERE online');
  await good.applied;
  await bad.applied;
  // a refusal on resubscribing, made deterministic: the query's text is changed under the client
  bad.queries[0] = 'SELECT * FROM nowhere';
  const errors = [];
  const refused = new Promise((resolve) => bob.onError((e) => { errors.push(e.code); if (e.code !== 'resubscribe') resolve(); }));
  await owner.publish(exampleWasm('chat'));
  await refused;
  assert.ok((await owner.call('send_message', 'still here')).ok);
  assert.ok((await bob.call('send_message', 'me too')).ok);
  assert.equal(bad.active, false);
  assert.equal(good.active, true);
  assert.equal(bob.table('user').count(), 0);
  assert.ok(bob.table('message').rows().some((r) => r.text === 'still here'));
  assert.deepEqual(errors, ['resubscribe', 'query_error']);
  await bob.close();
});
