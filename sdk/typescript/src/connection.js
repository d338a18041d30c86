// One connection to one database (docs/client-typescript.md): requests matched to answers by
// request id, the client cache kept from SubscribeApplied / TransactionUpdate, reconnection with
// exponential back-off and jitter, resubscribing and firing exactly the missed callbacks.

import { ClientCache, makeEvent } from './cache.js';
import { AuthError, ConnectionLost, DataError, ProtocolError, ReducerError, StdbError, errorFromMessage } from './errors.js';
import { MAX_MESSAGE_BYTES, PARTED, checkMaxMessage, databaseUrl, decode, encode, joinParts, serverKey } from './protocol.js';
import { openSocket } from './socket.js';
import { defaultStorage } from './storage.js';
import { normalize, outgoing, toHex } from './values.js';

/** The caller's own TransactionUpdate (mirrors the Python ReducerOutcome). */
export class ReducerOutcome {
  constructor(msg) {
    this.reducer = msg.reducer;
    this.status = msg.status;
    this.message = msg.message ?? null;
    this.offset = msg.offset == null ? null : BigInt(msg.offset);
    this.timestamp = BigInt(msg.timestamp);
    Object.freeze(this);
  }

  get ok() { return this.status === 'committed'; }

  /** This outcome if it committed; a ReducerError saying why otherwise. */
  raiseForStatus() {
    if (!this.ok) {
      const kind = this.status === 'failed' ? 'error' : this.status;
      throw new ReducerError(`reducer '${this.reducer}' ${this.status}: ${this.message}`,
        { reducer: this.reducer, kind, message: this.message ?? '' });
    }
    return this;
  }
}

/** Queries subscribed together: `applied` resolves (to the subscription) once their rows are in
 * the cache; `queryIds` change when the client subscribes again after a reconnect. */
export class Subscription {
  constructor(conn, queries) {
    this.queries = queries;
    this.queryIds = [];
    this.active = true;
    this._conn = conn;
    this.applied = null;
  }

  async unsubscribe() {
    if (this.active) await this._conn._unsubscribe(this);
  }
}

const FATAL_CLOSE = new Set([1000, 4003, 4004]); // closed by us, refused, the database deleted
const CALLBACKS = ['connect', 'disconnect', 'reconnect', 'error'];

export class DbConnection {
  constructor(opts) {
    this.url = opts.url;
    this.database = opts.database;
    this.token = opts.token ?? null;
    this.identity = null;
    this.connectionId = null;
    this.module = null;
    this.state = 'connecting'; // connecting | connected | reconnecting | closed
    this.closeReason = null;
    this.cache = new ClientCache((kind, table, args) => this._emitRow(kind, table, args));
    this._opts = {
      confirmed: !!opts.confirmed,
      maxMessage: checkMaxMessage(opts.maxMessage ?? MAX_MESSAGE_BYTES),
      connectTimeoutMs: opts.connectTimeoutMs ?? 30000,
      WebSocket: opts.WebSocket,
    };
    const r = opts.reconnect ?? true;
    this._reconnect = r === false ? null
      : { initialDelayMs: 100, maxDelayMs: 10000, maxAttempts: Infinity, ...(r === true ? {} : r) };
    this._storage = opts.storage === undefined ? defaultStorage() : opts.storage;
    this._target = this.cache; // the cache answers go into (a staging one while resubscribing)
    this._socket = null;
    this._rid = 0;
    this._pending = new Map();
    this._parts = [];
    this._subs = [];
    this._rowFns = new Map();
    this._fns = Object.fromEntries(CALLBACKS.map((k) => [k, []]));
    for (const k of CALLBACKS) {
      const fn = opts[`on${k[0].toUpperCase()}${k.slice(1)}`];
      if (fn) this._fns[k].push(fn);
    }
    this._retryTimer = null;
    this._wake = null;
    this._resyncing = null;
  }

  get identityHex() { return this.identity ? toHex(this.identity) : null; }

  // ---- callbacks

  onConnect(fn) { return this._on('connect', fn); }
  onDisconnect(fn) { return this._on('disconnect', fn); }
  onReconnect(fn) { return this._on('reconnect', fn); }
  onError(fn) { return this._on('error', fn); }
  onInsert(table, fn) { return this._onRow('insert', table, fn); }
  onDelete(table, fn) { return this._onRow('delete', table, fn); }
  onUpdate(table, fn) { return this._onRow('update', table, fn); }

  _on(kind, fn) {
    this._fns[kind].push(fn);
    return () => { this._fns[kind] = this._fns[kind].filter((f) => f !== fn); };
  }

  _onRow(kind, table, fn) {
    const k = `${kind}\0${table}`;
    this._rowFns.set(k, [...(this._rowFns.get(k) ?? []), fn]);
    return () => this._rowFns.set(k, (this._rowFns.get(k) ?? []).filter((f) => f !== fn));
  }

  _emit(kind, ...args) {
    for (const fn of [...this._fns[kind]]) {
      try {
        fn(...args);
      } catch (e) {
        console.error(`stdb client: an on${kind} callback failed:`, e);
      }
    }
  }

  _emitRow(kind, table, args) {
    for (const fn of [...(this._rowFns.get(`${kind}\0${table}`) ?? [])]) {
      try {
        fn(...args);
      } catch (e) {
        // the cache is already right; a failing callback must not end the connection
        console.error(`stdb client: the ${kind} callback of table ${table} failed:`, e);
      }
    }
  }

  // ---- the cache

  /** The cached rows of `name` (empty until a subscription selects some). */
  table(name) { return this.cache.table(name); }

  // ---- requests

  _request(type, fields = {}, internal = false) {
    if (this._resyncing && !internal) { // after a module update: once the cache is whole again
      return this._resyncing.then(() => this._request(type, fields), () => this._request(type, fields));
    }
    const sock = this._socket;
    if ((this.state !== 'connected' && !internal) || !sock || sock.readyState !== 1) {
      const why = this.state === 'closed' ? (this.closeReason ?? 'closed by the client') : `${this.state}: ${this.closeReason ?? 'not connected'}`;
      return Promise.reject(new ConnectionLost(`the connection is not open (${why})`,
        { hint: this.state === 'reconnecting' ? 'wait for onReconnect and send it again' : null }));
    }
    const rid = ++this._rid;
    return new Promise((resolve, reject) => {
      this._pending.set(rid, { resolve, reject });
      try {
        sock.send(encode(type, { request_id: rid, ...fields }));
      } catch (e) {
        this._pending.delete(rid);
        reject(e instanceof StdbError ? e : new ProtocolError(`cannot encode a ${type} message: ${e.message}`));
      }
    });
  }

  /** Run a reducer: its ReducerOutcome once it committed (the cache already shows its changes)
   * or failed.  A call the server cannot run at all (no such reducer, wrong arguments) rejects
   * with its error; so does a call made while disconnected (ConnectionLost, at once). */
  async call(reducer, ...args) {
    const r = this.module?.reducers?.find((x) => x.name === reducer);
    if (r && r.params.length !== args.length) {
      const sig = r.params.map((p) => `${p.name}: ${p.type}`).join(', ');
      throw new DataError(`reducer '${reducer}' takes ${r.params.length} arguments (${sig}); ${args.length} given`);
    }
    const msg = await this._request('CallReducer', { reducer, args: args.map(outgoing) });
    return new ReducerOutcome(msg);
  }

  /** A one-off query: {columns, rows (arrays in column order), plan}.  Rows of `SELECT ... FROM
   * table` get that table's column types (u64 as bigint, ...). */
  async query(sql) {
    const m = await this._request('OneOffQuery', { sql });
    let types = Array.isArray(m.types) && m.types.length === m.columns.length ? m.types : null;
    if (!types) { // a server that does not name the columns' types: the table's, by column name
      const t = /\bfrom\s+"?([A-Za-z_][A-Za-z0-9_]*)"?/i.exec(sql);
      const schema = t && this.cache.schemas.get(t[1]);
      types = m.columns.map((c) => schema?.columns.find((x) => x.name === c)?.type ?? '');
    }
    return {
      columns: m.columns, types,
      rows: m.rows.map((r) => r.map((v, i) => normalize(types[i] ?? '', v))), plan: m.plan,
    };
  }

  /** Subscribe to queries (all or none).  Returns at once; `sub.applied` resolves once their
   * rows are in the cache (each announced to the insert callbacks). */
  subscribe(...queries) {
    const sub = new Subscription(this, queries);
    sub.applied = this._subscribe(sub, (type, fields) => this._request(type, fields)).then(() => {
      if (sub.active) this._subs.push(sub);
      return sub;
    });
    sub.applied.catch(() => { sub.active = false; });
    return sub;
  }

  async _subscribe(sub, request) {
    if (!this.module) await this._loadModule(this.state !== 'connected');
    const m = await request('Subscribe', { queries: sub.queries });
    sub.queryIds = m.queries.map((q) => q.query_id);
  }

  async _unsubscribe(sub) {
    sub.active = false;
    this._subs = this._subs.filter((s) => s !== sub);
    const ids = sub.queryIds.filter((q) => this.cache.release(q));
    if (!ids.length) return;
    if (this.state === 'connected') {
      await this._request('Unsubscribe', { query_ids: ids }); // rows dropped when it is applied
    } else {
      for (const q of ids) this.cache.removeQuery(q); // the server forgot them when we lost it
    }
  }

  /** The module's description (tables, reducers); also kept as `conn.module`. */
  describe() { return this._describe(false); }

  /** The description if the database has a module yet (null until one is published). */
  async _loadModule(internal) {
    try {
      return await this._describe(internal);
    } catch (e) {
      if (e.code !== 'no_such_database') throw e;
      return null;
    }
  }

  async _describe(internal) {
    const m = await this._request('Describe', {}, internal);
    this.module = m.module;
    this._target.setSchemas(m.module?.tables ?? []);
    return m.module;
  }

  /** Publish a module (the first publisher of a database owns it). */
  async publish(wasm) {
    const m = await this._request('Publish', { wasm: wasm instanceof Uint8Array ? wasm : new Uint8Array(wasm) });
    await this.describe();
    return { createdTables: m.created_tables, alteredTables: m.altered_tables, reducers: m.reducers, unsubscribed: m.unsubscribed };
  }

  /** Close the connection (no reconnect); pending requests reject with ConnectionLost. */
  close() {
    if (this.state === 'closed') return Promise.resolve();
    this._stop('closed by the client');
    const sock = this._socket;
    if (!sock || sock.readyState >= 2) return Promise.resolve();
    return new Promise((resolve) => {
      sock.addEventListener('close', () => resolve());
      sock.close(1000);
    });
  }

  _stop(reason) {
    this.state = 'closed';
    this.closeReason ??= reason;
    clearTimeout(this._retryTimer);
    if (this._wake) this._wake();
    this._failPending(reason);
  }

  _failPending(reason) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    this._parts = [];
    for (const p of pending) p.reject(new ConnectionLost(`the connection is closed: ${reason}`));
  }

  // ---- the socket

  async _open() {
    let token = this.token;
    const key = serverKey(this.url);
    if (!token && this._storage) token = (await this._storage.get(key)) ?? null;
    const url = databaseUrl(this.url, this.database, { ...this._opts, token });
    const shown = databaseUrl(this.url, this.database, this._opts);
    const { socket, first, attach } = await openSocket(url, shown,
      { WebSocket: this._opts.WebSocket, maxMessage: this._opts.maxMessage, timeoutMs: this._opts.connectTimeoutMs });
    if (this.state === 'closed') {
      socket.close(1000);
      throw new ConnectionLost('the connection was closed by the client');
    }
    const hello = decode(first);
    if (hello.type !== 'IdentityToken') {
      socket.close(1002);
      if (hello.type === 'Error') throw errorFromMessage(hello);
      throw new ProtocolError(`expected IdentityToken first, got ${hello.type}`);
    }
    this.identity = new Uint8Array(hello.identity);
    this.connectionId = new Uint8Array(hello.connection_id);
    if (hello.token !== token && this._storage) await this._storage.set(key, hello.token);
    this.token = hello.token;
    this._socket = socket;
    attach((d) => this._onMessage(socket, d), (e) => this._onClose(socket, e));
  }

  _onMessage(socket, data) {
    if (socket !== this._socket) return;
    let msg;
    try {
      msg = decode(data);
    } catch (e) {
      this._emit('error', e);
      return;
    }
    if (msg.type in PARTED && (msg.more || this._parts.length)) {
      this._parts.push(msg);
      if (msg.more) return;
      msg = joinParts(this._parts.splice(0));
    }
    this._dispatch(msg);
  }

  _dispatch(msg) {
    const t = msg.type;
    const rid = msg.request_id ?? null;
    const cache = this._target;
    // the cache changes here, in the order the server sent things
    if (t === 'SubscribeApplied') {
      for (const q of msg.queries) cache.addQuery(q.query_id, q.table, q.rows);
    } else if (t === 'UnsubscribeApplied') {
      for (const q of msg.query_ids) cache.removeQuery(q);
    } else if (t === 'TransactionUpdate') {
      if (msg.updates.length) cache.apply(msg.updates, makeEvent(msg, rid));
    } else if (t === 'Error') {
      const err = errorFromMessage(msg);
      const p = rid == null ? undefined : this._pending.get(rid);
      if (!p) {
        if (err.code === 'resubscribe') {
          this._resyncing = this._resync(false);
          this._resyncing.catch((e) => this._emit('error', e)).finally(() => { this._resyncing = null; });
        }
        this._emit('error', err);
        return;
      }
      this._pending.delete(rid);
      p.reject(err);
      return;
    }
    if (rid != null) {
      const p = this._pending.get(rid);
      if (p) {
        this._pending.delete(rid);
        p.resolve(msg);
      }
    }
  }

  _onClose(socket, e) {
    if (socket !== this._socket) return;
    this._socket = null;
    const reason = e.reason ? `${e.code} ${e.reason}` : `code ${e.code}`;
    if (this.state === 'closed') return;
    this.closeReason = reason;
    const wasUp = this.state === 'connected';
    const retry = this._reconnect && !FATAL_CLOSE.has(e.code) && this.state !== 'connecting';
    this.state = retry ? 'reconnecting' : 'closed';
    this._failPending(reason);
    if (wasUp) this._emit('disconnect', reason);
    else if (!retry && this.state === 'closed' && this._looping) { // a fatal close while coming back
      this._emit('error', new ConnectionLost(`reconnecting ended: ${reason}`));
    }
    if (retry && !this._looping) this._reconnectLoop();
  }

  /** Subscribe every subscription again into a staging cache (the module's description first),
   * then hand the differences to the callbacks.  `internal`: before the connection is usable. */
  async _resync(internal) {
    const staging = new ClientCache(null);
    this._target = staging;
    const request = (type, fields) => this._request(type, fields, true);
    try {
      await this._loadModule(true);
      for (const sub of [...this._subs]) {
        try {
          await this._subscribe(sub, request);
        } catch (e) {
          if (e instanceof ConnectionLost || !(e instanceof StdbError)) throw e;
          // the server refuses it now (e.g. its table left the module): drop it, say why
          sub.active = false;
          this._subs = this._subs.filter((s) => s !== sub);
          this._emit('error', e);
        }
      }
    } finally {
      if (this._target === staging) this._target = this.cache;
    }
    if (!internal && this.state !== 'connected') throw new ConnectionLost('the connection was lost while resubscribing');
    this.cache.adopt(staging);
  }

  async _reconnectLoop() {
    this._looping = true;
    const r = this._reconnect;
    try {
      for (let attempt = 0; this.state === 'reconnecting' && attempt < r.maxAttempts; attempt++) {
        const full = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** attempt);
        const delay = full / 2 + Math.random() * (full / 2); // exponential back-off, jitter
        if (r.onRetry) {
          try {
            r.onRetry(attempt + 1, delay);
          } catch (e) {
            console.error('stdb client: the onRetry callback failed:', e);
          }
        }
        await new Promise((resolve) => {
          this._wake = resolve;
          this._retryTimer = setTimeout(resolve, delay);
        });
        if (this.state !== 'reconnecting') return;
        try {
          await this._open();
          await this._resync(true);
          if (this.state !== 'reconnecting' || !this._socket) continue;
          this.state = 'connected';
          this.closeReason = null;
          this._emit('reconnect', this);
          return;
        } catch (e) {
          if (e instanceof AuthError) {
            this._stop(e.detail);
            this._emit('error', e);
            return;
          }
          if (this._socket) { // resubscribing failed on an open socket: start over
            const s = this._socket;
            this._socket = null;
            s.close(1000);
            this._emit('error', e);
          }
        }
      }
      if (this.state === 'reconnecting') {
        this._stop(`gave up reconnecting after ${r.maxAttempts} attempts`);
        this._emit('error', new ConnectionLost(`gave up reconnecting to ${this.url} after ${r.maxAttempts} attempts`));
      }
    } finally {
      this._looping = false;
    }
  }
}

/** Connect to `database` on the server at `url` (`ws://host:port`); resolves once connected
 * with the module's description loaded (onConnect has run). */
export async function connect(opts) {
  if (!opts || typeof opts.url !== 'string' || typeof opts.database !== 'string') {
    throw new StdbError('connect({url, database, ...}) needs a url (ws://host:port) and a database name', { code: 'bad_url' });
  }
  const conn = new DbConnection(opts);
  await conn._open();
  try {
    await conn._loadModule(true);
  } catch (e) {
    conn._reconnect = null;
    await conn.close();
    throw e;
  }
  conn.state = 'connected';
  conn._emit('connect', conn, conn.identity, conn.token);
  return conn;
}
