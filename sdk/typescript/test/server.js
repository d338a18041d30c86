// Test helpers: a real stdb server (`python -m stdb start`) in a temporary data directory, and
// the example modules built to wasm (once per source version, shared by the test files).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync, readFileSync, renameSync, statSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const PYTHON = process.env.STDB_PYTHON || 'python3';

/** The wasm of examples/NAME/NAME.c, built with stdb.build_module (cached by the source's mtime). */
export function exampleWasm(name) {
  const src = join(ROOT, 'examples', name, `${name}.c`);
  const dir = join(tmpdir(), 'stdb-ts-test-wasm');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${name}-${Math.trunc(statSync(src).mtimeMs)}.wasm`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(PYTHON, ['-c', 'import sys, stdb; stdb.build_module(sys.argv[1], sys.argv[2])', src, tmp], { cwd: ROOT, stdio: 'inherit' });
    renameSync(tmp, out);
  }
  return new Uint8Array(readFileSync(out));
}

export function tempDir(prefix = 'stdb-ts-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

async function waitFor(cond, what, proc, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (proc.exitCode !== null) throw new Error(`the server exited (${proc.exitCode}) before ${what}:\n${proc.log}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${proc.log}`);
    await new Promise((r) => setTimeout(r, 25)); // polls a condition; never used as a sync point on its own
  }
}

/** Start a server on `port` (0: a free one) with data in `data`: {url, port, stop()}. */
export async function startServer(data = tempDir(), port = 0) {
  const portFile = join(tempDir('stdb-ts-port-'), 'port');
  const proc = spawn(PYTHON, ['-m', 'stdb', 'start', '--data', data, '--listen', `127.0.0.1:${port}`,
    '--port-file', portFile, '--log-level', 'warning'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.log = '';
  proc.stdout.on('data', (d) => { proc.log += d; });
  proc.stderr.on('data', (d) => { proc.log += d; });
  const exited = new Promise((r) => proc.once('exit', r));
  const text = await waitFor(() => existsSync(portFile) && readFileSync(portFile, 'utf8').trim(), 'the port file', proc);
  const p = Number(text);
  rmSync(dirname(portFile), { recursive: true, force: true });
  return {
    data,
    port: p,
    url: `ws://127.0.0.1:${p}`,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
