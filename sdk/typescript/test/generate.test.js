// `stdb generate --lang typescript`: the bindings of a published module type-check with tsc
// against the SDK's declarations, and work at run time (transpiled by esbuild).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { transform } from 'esbuild';
import { connect } from '../src/index.js';
import { startServer, exampleWasm, tempDir, ROOT } from './server.js';

const OUT = new URL('./.generated/', import.meta.url).pathname;
let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

test('generated TypeScript bindings compile against the SDK and call reducers', async () => {
  const conn = await connect({ url: server.url, database: 'bank', storage: null, reconnect: false });
  await conn.publish(exampleWasm('transfer'));
  mkdirSync(OUT, { recursive: true });
  const bindings = join(OUT, 'bank.ts');
  execFileSync(process.env.STDB_PYTHON || 'python3', ['-m', 'stdb', 'generate', 'bank', '--lang', 'typescript', '-o', bindings,
    '--server', server.url, '--credentials', join(tempDir(), 'credentials.json')], { cwd: ROOT, stdio: 'pipe' });
  const src = readFileSync(bindings, 'utf8');
  assert.match(src, /export interface Account extends Row/);
  // type-check the bindings and a use of them (the SDK resolved by its package name)
  const usage = join(OUT, 'use-bank.ts');
  writeFileSync(usage, `import { connect } from '@stdb/client';
import { Reducers, tables, type Account } from './bank.js';
export async function use(): Promise<bigint> {
  const conn = await connect({ url: 'ws://x', database: 'bank' });
  const r = new Reducers(conn);
  (await r.transfer(1n, 2, 3n)).raiseForStatus();
  const a: Account | null = tables(conn).account.find(1n);
  // @ts-expect-error: a string is not an account id
  await r.createAccount('one', 1n);
  return a ? a.balance + 1n : 0n;
}
`);
  const program = ts.createProgram([usage], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, types: [] });
  const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  assert.deepEqual(diags, []);
  // and at run time
  const { code } = await transform(src, { loader: 'ts', format: 'esm' });
  const js = join(OUT, 'bank.mjs');
  writeFileSync(js, code);
  const { Reducers, tables, DATABASE } = await import(js);
  assert.equal(DATABASE, 'bank');
  await conn.subscribe('SELECT * FROM account').applied;
  const r = new Reducers(conn);
  assert.ok((await r.createAccount(1n, 50n)).ok);
  assert.ok((await r.createAccount(2, 0)).ok);
  assert.ok((await r.transfer(1, 2n, 20n)).ok);
  assert.equal(tables(conn).account.find(2n).balance, 20n);
  assert.equal((await r.transfer(2n, 1n, 10n ** 6n)).message, 'insufficient funds');
  await conn.close();
});
