// Where identity tokens are kept between connections: a tiny interface
// { get(key) -> token | null, set(key, token) } (either may return a promise), keyed by the
// server (`ws://host:port`).  localStorage in a browser, a JSON file in Node (the same
// credentials file as the Python client and the CLI), or one the caller passes.

/** Tokens kept in memory only (a new identity per process). */
export function memoryStorage() {
  const m = new Map();
  return { get: (k) => m.get(k) ?? null, set: (k, v) => void m.set(k, v) };
}

/** Tokens in the browser's localStorage, under `prefix + server`. */
export function localStorageStorage(prefix = 'stdb.token:') {
  const ls = globalThis.localStorage;
  return { get: (k) => ls.getItem(prefix + k), set: (k, v) => ls.setItem(prefix + k, v) };
}

/** Tokens in a JSON credentials file (Node only; loaded on first use, so that the browser path
 * never imports `fs`).  Without `path`: $STDB_CONFIG_DIR/credentials.json (default ~/.config/stdb). */
export function fileStorage(path) {
  let impl = null;
  const load = async () => (impl ??= (await import('./node.js')).credentialsFile(path));
  return { get: async (k) => (await load()).get(k), set: async (k, v) => (await load()).set(k, v) };
}

/** The platform's storage: localStorage where there is one, else the credentials file in Node. */
export function defaultStorage() {
  if (typeof globalThis.localStorage !== 'undefined' && globalThis.localStorage) return localStorageStorage();
  if (typeof process !== 'undefined' && process.versions?.node) return fileStorage();
  return memoryStorage();
}
