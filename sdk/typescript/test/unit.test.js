// Pieces without a server: the cache's rules (docs/client.md, "The client cache"), parts,
// values, and that the browser bundle has no Node-only import.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder } from 'cbor-x';
import { ClientCache } from '../src/cache.js';
import { joinParts, encode, databaseUrl } from '../src/protocol.js';

const SCHEMA = [{ name: 'player', columns: [{ name: 'id', type: 'u64' }, { name: 'name', type: 'string' }], primary_key: ['id'] }];

function cacheWithLog() {
  const log = [];
  const cache = new ClientCache((kind, table, args) => log.push([kind, ...args.slice(0, -1).map((r) => `${r.id}:${r.name}`)]));
  cache.setSchemas(SCHEMA);
  return { cache, log };
}
const tx = (updates) => updates.map(([q, deletes, inserts]) => ({ query_id: q, table: 'player', deletes, inserts }));

test('one transaction: deletes, then updates, then inserts, after the whole of it is applied', () => {
  const { cache, log } = cacheWithLog();
  cache.addQuery(1, 'player', [[1, 'a'], [2, 'b']]);
  assert.deepEqual(log, [['insert', '1:a'], ['insert', '2:b']]);
  log.length = 0;
  const t = cache.table('player');
  cache.emit = (kind, _table, args) => log.push([kind, t.count(), ...args.slice(0, -1).map((r) => `${r.id}:${r.name}`)]);
  cache.apply(tx([[1, [[1, 'a'], [2, 'b']], [[3, 'c'], [2, 'B']]]]), {});
  assert.deepEqual(log, [['delete', 2, '1:a'], ['update', 2, '2:b', '2:B'], ['insert', 2, '3:c']]);
  assert.equal(t.find(2n).name, 'B');
  assert.equal(t.find(1), null);
});

test('a row held by two queries is held once; moving between queries is no change', () => {
  const { cache, log } = cacheWithLog();
  cache.addQuery(1, 'player', [[1, 'a']]);
  cache.addQuery(2, 'player', [[1, 'a'], [2, 'b']]);
  assert.deepEqual(log, [['insert', '1:a'], ['insert', '2:b']]);
  assert.equal(cache.table('player').count(), 2);
  log.length = 0;
  cache.apply(tx([[1, [[1, 'a']], []]]), {}); // query 2 still holds it
  assert.deepEqual(log, []);
  cache.apply(tx([[2, [[2, 'b']], []], [1, [], [[2, 'b']]]]), {}); // moves from query 2 to 1
  assert.deepEqual(log, []);
  cache.removeQuery(2);
  assert.deepEqual(log, [['delete', '1:a']]);
  assert.deepEqual(cache.table('player').rows().map((r) => r.id), [2n]);
});

test('adopt: a fresh copy of the subscriptions fires exactly the differences', () => {
  const { cache, log } = cacheWithLog();
  cache.addQuery(1, 'player', [[1, 'a'], [2, 'b'], [3, 'c']]);
  const kept = cache.table('player').find(3);
  log.length = 0;
  const fresh = new ClientCache(null);
  fresh.setSchemas(SCHEMA);
  fresh.addQuery(7, 'player', [[2, 'B'], [3, 'c'], [4, 'd']]);
  cache.adopt(fresh);
  assert.deepEqual(log, [['delete', '1:a'], ['update', '2:b', '2:B'], ['insert', '4:d']]);
  assert.equal(cache.table('player').find(3), kept);
  assert.deepEqual(cache.queryIds(), [7]);
});

test('joinParts puts the documented parts back together (docs/protocol.md test vectors)', () => {
  const d = new Decoder({ useRecords: false, mapsAsObjects: true });
  const parts = [
    'a66a726571756573745f69640267636f6c756d6e7382626964647465787464726f77738182016568656c6c6f64706c616e816c7363616e206d657373616765646d6f7265f56474797065714f6e654f66665175657279526573756c74',
    'a66a726571756573745f69640267636f6c756d6e7382626964647465787464726f777381820265776f726c6464706c616e816c7363616e206d657373616765646d6f7265f46474797065714f6e654f66665175657279526573756c74',
  ].map((h) => d.decode(Buffer.from(h, 'hex')));
  const m = joinParts(parts);
  assert.deepEqual(m.rows, [[1, 'hello'], [2, 'world']]);
  assert.equal(m.more, false);
  const u = joinParts([
    { type: 'TransactionUpdate', request_id: null, more: true, updates: [{ query_id: 1, table: 't', deletes: [[1]], inserts: [] }, { query_id: 2, table: 't', deletes: [[2]], inserts: [[3]] }] },
    { type: 'TransactionUpdate', request_id: null, more: false, updates: [{ query_id: 2, table: 't', deletes: [], inserts: [[4]] }] },
  ]);
  assert.deepEqual(u.updates.map((x) => [x.query_id, x.deletes, x.inserts]), [[1, [[1]], []], [2, [[2]], [[3], [4]]]]);
  // what the client sends: the documented OneOffQuery bytes decode to the same map
  assert.deepEqual(d.decode(encode('OneOffQuery', { request_id: 1, sql: 'SELECT * FROM message' })),
    d.decode(Buffer.from('a36a726571756573745f6964016373716c7553454c454354202a2046524f4d206d65737361676564747970656b4f6e654f66665175657279', 'hex')));
  assert.equal(databaseUrl('ws://h:1/', 'my-db', { confirmed: true, token: 'a b' }), 'ws://h:1/v1/database/my-db?confirmed=true&token=a%20b');
});

test('the browser bundle (esbuild) has no Node-only import', async () => {
  const esbuild = await import('esbuild');
  const out = await esbuild.build({ entryPoints: [new URL('../src/index.js', import.meta.url).pathname], bundle: true,
    platform: 'browser', format: 'esm', write: false, logLevel: 'silent' });
  const text = out.outputFiles[0].text;
  assert.doesNotMatch(text, /node:fs|node:path|require\(["']ws["']\)|from ["']ws["']/);
  assert.match(text, /v1\.cbor\.stdb/);
});

test('the type declarations compile with a use of the API (tsc, strict)', async () => {
  const ts = (await import('typescript')).default;
  const dir = new URL('..', import.meta.url).pathname;
  const cfg = ts.getParsedCommandLineOfConfigFile(`${dir}tsconfig.json`, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  const program = ts.createProgram(cfg.fileNames, cfg.options);
  const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  assert.deepEqual(diags, []);
});

test('fileStorage writes the credentials file the Python client and the CLI read (mode 0600)', async () => {
  const { mkdtempSync, statSync, readFileSync } = await import('node:fs');
  const { execFileSync } = await import('node:child_process');
  const { tmpdir } = await import('node:os');
  const { fileStorage } = await import('../src/index.js');
  const { ROOT } = await import('./server.js');
  const path = `${mkdtempSync(`${tmpdir()}/stdb-ts-cred-`)}/sub/credentials.json`;
  const s = fileStorage(path);
  assert.equal(await s.get('ws://127.0.0.1:3000'), null);
  await s.set('ws://127.0.0.1:3000', 'tok-1');
  await s.set('ws://other:1', 'tok-2');
  assert.equal(await s.get('ws://127.0.0.1:3000'), 'tok-1');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { version: 1, tokens: { 'ws://127.0.0.1:3000': 'tok-1', 'ws://other:1': 'tok-2' } });
  const py = execFileSync(process.env.STDB_PYTHON || 'python3', ['-c',
    'import sys; from stdb.client.credentials import load_token; print(load_token(sys.argv[1], "ws://127.0.0.1:3000/v1/database/x"))', path],
  { cwd: ROOT, encoding: 'utf8' });
  assert.equal(py.trim(), 'tok-1');
});

test('server errors become the matching classes (code, detail, hint, retryAfter)', async () => {
  const { errorFromMessage, RateLimited, QueryError, StdbError } = await import('../src/index.js');
  const r = errorFromMessage({ code: 'rate_limited', detail: 'too many calls', hint: 'slow down', retry_after: 0.25 });
  assert.ok(r instanceof RateLimited && r.retryAfter === 0.25 && r.message === 'too many calls (hint: slow down)');
  const q = errorFromMessage({ code: 'query_error', detail: 'no table x', hint: null });
  assert.ok(q instanceof QueryError && q instanceof StdbError && q.code === 'query_error' && q.hint === null);
  const u = errorFromMessage({ code: 'brand_new', detail: 'd' });
  assert.ok(u.constructor === StdbError && u.code === 'brand_new');
});
