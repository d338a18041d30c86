// The optional React entry point (src/react.js, src/store.js) on a client cache fed by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
import { ClientCache } from '../src/cache.js';
import { tableStore, useTable } from '../src/react.js';

const SCHEMA = [{ name: 'player', columns: [{ name: 'id', type: 'u64' }, { name: 'name', type: 'string' }], primary_key: ['id'] }];

// the pieces of a DbConnection the store uses, over a real ClientCache
function fakeConn() {
  const fns = new Map();
  const cache = new ClientCache((kind, table, args) => { for (const fn of fns.get(`${kind}\0${table}`) ?? []) fn(...args); });
  cache.setSchemas(SCHEMA);
  const on = (kind) => (table, fn) => {
    const k = `${kind}\0${table}`;
    fns.set(k, [...(fns.get(k) ?? []), fn]);
    return () => fns.set(k, fns.get(k).filter((f) => f !== fn));
  };
  return { cache, table: (n) => cache.table(n), onInsert: on('insert'), onDelete: on('delete'), onUpdate: on('update') };
}
const tx = (deletes, inserts) => [{ query_id: 1, table: 'player', deletes, inserts }];

test('a table store: one snapshot between changes, a new one after each, listeners until unsubscribed', () => {
  const conn = fakeConn();
  conn.cache.addQuery(1, 'player', [[1, 'a']]);
  const store = tableStore(conn, 'player');
  const first = store.getSnapshot();
  assert.deepEqual(first.map((r) => r.name), ['a']);
  assert.equal(store.getSnapshot(), first);                     // unchanged: the same array
  let calls = 0;
  const off = store.subscribe(() => calls++);
  conn.cache.apply(tx([[1, 'a']], [[1, 'A'], [2, 'b']]), {});  // an update and an insert
  assert.equal(calls, 2);
  const second = store.getSnapshot();
  assert.notEqual(second, first);
  assert.deepEqual(second.map((r) => r.name).sort(), ['A', 'b']);
  off();
  conn.cache.apply(tx([[2, 'b']], []), {});
  assert.equal(calls, 2);                                       // unsubscribed: not called
});

test('useTable renders the cached rows', () => {
  const conn = fakeConn();
  conn.cache.addQuery(1, 'player', [[1, 'ada'], [2, 'bob']]);
  function Players() {
    const rows = useTable(conn, 'player');
    return createElement('ul', null, rows.map((r) => createElement('li', { key: String(r.id) }, r.name)));
  }
  assert.equal(renderToString(createElement(Players)), '<ul><li>ada</li><li>bob</li></ul>');
});
