// Node-only pieces, imported dynamically (package.json's "browser" field maps this file to
// nothing in browser bundles): the credentials file and the `ws` websocket.

import { mkdir, readFile, rename, writeFile, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { homedir } from 'node:os';
import { StdbError } from './errors.js';

export function defaultCredentialsPath() {
  const base = process.env.STDB_CONFIG_DIR
    || join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'stdb');
  return join(base, 'credentials.json');
}

/** {"version": 1, "tokens": {server: token}}, written atomically with mode 0600. */
export function credentialsFile(path = defaultCredentialsPath()) {
  const read = async () => {
    let text;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if (e.code === 'ENOENT') return { version: 1, tokens: {} };
      throw new StdbError(`cannot read the credentials file ${path}: ${e.message}`, { code: 'bad_credentials' });
    }
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new StdbError(`cannot read the credentials file ${path}: ${e.message}`,
        { code: 'bad_credentials', hint: 'fix or delete it (a new identity is made on the next connect)' });
    }
    if (!data || typeof data.tokens !== 'object' || data.tokens === null) {
      throw new StdbError(`${path} is not a credentials file (no 'tokens' object)`, { code: 'bad_credentials', hint: 'fix or delete it' });
    }
    return data;
  };
  return {
    async get(key) {
      const t = (await read()).tokens[key];
      return typeof t === 'string' ? t : null;
    },
    async set(key, token) {
      const data = await read();
      data.tokens[key] = token;
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(data, null, 1), { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, path);
    },
  };
}

/** The `ws` package's WebSocket (Node 20 has no global one). */
export async function nodeWebSocket() {
  try {
    return (await import('ws')).default;
  } catch {
    throw new StdbError('no WebSocket: this Node has no global WebSocket and the `ws` package is not installed',
      { code: 'no_websocket', hint: 'npm install ws, or pass {WebSocket} to connect()' });
  }
}
