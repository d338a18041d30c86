// The client cache (docs/client.md, "The client cache"): the rows of a connection's subscribed
// queries, per table.  Two queries may select the same row: each row is counted once per query
// holding it and present while any query holds it.  A transaction's diffs are applied as a net
// change per row; a row deleted and one inserted with the same primary key in one transaction
// is one update.  Callbacks run after the whole transaction is applied: per table, deletes,
// then updates, then inserts.

import { normalize, valueKey } from './values.js';

/** What caused a change; `reducer` and `offset` are null for a subscription's initial rows. */
export function makeEvent(msg = null, requestId = null) {
  return Object.freeze({
    reducer: msg?.reducer ?? null,
    caller: msg?.caller == null ? null : new Uint8Array(msg.caller),
    status: msg?.status ?? 'committed',
    offset: msg?.offset == null ? null : BigInt(msg.offset),
    timestamp: msg?.timestamp == null ? null : BigInt(msg.timestamp),
    requestId,
  });
}

/** The cached rows of one table: iterate it, `count()`, `find(pk)`. */
export class TableCache {
  constructor(name, schema) {
    this.name = name;
    this.columns = schema ? schema.columns.map((c) => c.name) : [];
    this.types = schema ? schema.columns.map((c) => c.type) : [];
    this.primaryKey = schema ? [...schema.primary_key] : [];
    this._pk = this.primaryKey.map((k) => this.columns.indexOf(k));
    this._count = new Map(); // row key -> number of queries holding it
    this._rows = new Map(); // row key -> row object
    this._byPk = new Map(); // primary key's key -> row object
  }

  /** A row (an array in column order, as the server sends it) as an object keyed by column name. */
  _row(arr) {
    const o = {};
    for (let i = 0; i < arr.length; i++) o[this.columns[i] ?? `column${i}`] = normalize(this.types[i] ?? '', arr[i]);
    return Object.freeze(o);
  }

  _pkKey(row) {
    if (!this._pk.length) return null;
    return valueKey(this._pk.length === 1 ? row[this.primaryKey[0]] : this.primaryKey.map((k) => row[k]));
  }

  [Symbol.iterator]() { return [...this._rows.values()][Symbol.iterator](); }
  rows() { return [...this._rows.values()]; }
  count() { return this._rows.size; }

  /** The row whose primary key is `key` (an array for a composite key), or null.  Integer keys
   * of u64/i64 columns may be given as numbers. */
  find(key) {
    if (!this._pk.length) return null;
    const k = this._pk.length === 1 ? normalize(this.types[this._pk[0]], key)
      : key.map((v, i) => normalize(this.types[this._pk[i]], v));
    return this._byPk.get(valueKey(k)) ?? null;
  }

  /** Apply per-row count changes; [rows that appeared, rows that disappeared]. */
  _apply(net, objs) {
    const added = [];
    const removed = [];
    for (const [key, n] of net) {
      if (!n) continue;
      const before = this._count.get(key) ?? 0;
      const after = before + n;
      if (after <= 0) {
        if (before) {
          const row = this._rows.get(key);
          this._count.delete(key);
          this._rows.delete(key);
          if (this._pk.length) this._byPk.delete(this._pkKey(row));
          removed.push(row);
        }
      } else {
        this._count.set(key, after);
        if (!before) {
          const row = objs.get(key);
          this._rows.set(key, row);
          if (this._pk.length) this._byPk.set(this._pkKey(row), row);
          added.push(row);
        }
      }
    }
    return [added, removed];
  }

  _clear() {
    this._count.clear();
    this._rows.clear();
    this._byPk.clear();
  }
}

/** Every table's cache, the rows each query holds, and the change callbacks. */
export class ClientCache {
  /** @param {(kind: string, table: string, args: unknown[]) => void} [emit] callbacks (none for a staging cache) */
  constructor(emit = null) {
    this.emit = emit;
    this.schemas = new Map(); // table -> its description (columns, primary_key)
    this.tables = new Map();
    this._queries = new Map(); // query id -> {table, held: Map<row key, n>}
    this._holds = new Map(); // query id -> subscriptions holding it
  }

  setSchemas(tables) {
    this.schemas = new Map(tables.map((t) => [t.name, t]));
    for (const [name, t] of this.tables) {
      if (!t.count()) this.tables.set(name, new TableCache(name, this.schemas.get(name)));
    }
  }

  table(name) {
    let t = this.tables.get(name);
    if (!t) {
      t = new TableCache(name, this.schemas.get(name));
      this.tables.set(name, t);
    }
    return t;
  }

  queryIds() { return [...this._queries.keys()]; }

  /** A query's initial rows (a query subscribed again by another subscription is held once more). */
  addQuery(queryId, table, rows) {
    this._holds.set(queryId, (this._holds.get(queryId) ?? 0) + 1);
    if (this._queries.has(queryId)) return;
    this._queries.set(queryId, { table, held: new Map() });
    this.apply([{ query_id: queryId, table, deletes: [], inserts: rows }], makeEvent());
  }

  /** A subscription lets go of a query: true when none holds it any more (then unsubscribe it). */
  release(queryId) {
    const n = this._holds.get(queryId) ?? 0;
    if (n <= 1) {
      this._holds.delete(queryId);
      return this._queries.has(queryId);
    }
    this._holds.set(queryId, n - 1);
    return false;
  }

  removeQuery(queryId) {
    const q = this._queries.get(queryId);
    if (!q) return;
    const t = this.table(q.table);
    const net = new Map([...q.held].map(([k, n]) => [k, -n]));
    this._queries.delete(queryId);
    const [, removed] = t._apply(net, new Map());
    const ev = makeEvent();
    for (const r of removed) this._fire('delete', t.name, [r, ev]);
  }

  /** A TransactionUpdate's `updates` (or a subscription's initial rows): applied as one net
   * change, then the callbacks. */
  apply(updates, event) {
    const perTable = new Map(); // table -> [net, objs]
    for (const u of updates) {
      const q = this._queries.get(u.query_id);
      if (!q) continue; // a query no longer held (an unsubscribe crossed the update)
      const t = this.table(q.table);
      let acc = perTable.get(t);
      if (!acc) perTable.set(t, (acc = [new Map(), new Map()]));
      const [net, objs] = acc;
      for (const r of u.deletes) {
        const row = t._row(r);
        const key = valueKey(Object.values(row));
        const h = q.held.get(key) ?? 0;
        if (h > 0) {
          if (h === 1) q.held.delete(key); else q.held.set(key, h - 1);
          net.set(key, (net.get(key) ?? 0) - 1);
        }
      }
      for (const r of u.inserts) {
        const row = t._row(r);
        const key = valueKey(Object.values(row));
        q.held.set(key, (q.held.get(key) ?? 0) + 1);
        net.set(key, (net.get(key) ?? 0) + 1);
        objs.set(key, row);
      }
    }
    const changes = [];
    for (const [t, [net, objs]] of perTable) changes.push([t, ...t._apply(net, objs)]);
    for (const [t, added, removed] of changes) this._announce(t, added, removed, event);
  }

  /** Take over `fresh`'s queries and rows (a staging cache filled by resubscribing), firing the
   * callbacks for exactly what differs from what this cache held. */
  adopt(fresh, event = makeEvent()) {
    const names = new Set([...this.tables.keys(), ...fresh.tables.keys()]);
    const diffs = [];
    for (const name of names) {
      const old = this.table(name);
      const neu = fresh.table(name);
      const added = [];
      const removed = [];
      for (const [k, row] of old._rows) if (!neu._rows.has(k)) removed.push(row);
      for (const [k, row] of neu._rows) {
        const kept = old._rows.get(k);
        if (kept) neu._rows.set(k, kept); else added.push(row);
      }
      neu._byPk = new Map([...neu._rows.values()].map((r) => [neu._pkKey(r), r]));
      diffs.push([neu, added, removed]);
    }
    this.schemas = fresh.schemas;
    this.tables = new Map(diffs.map(([t]) => [t.name, t]));
    this._queries = fresh._queries;
    this._holds = fresh._holds;
    for (const [t, added, removed] of diffs) this._announce(t, added, removed, event);
  }

  /** Forget every query and row (no callbacks). */
  clear() {
    this._queries.clear();
    this._holds.clear();
    for (const t of this.tables.values()) t._clear();
  }

  _announce(t, added, removed, event) {
    const updated = [];
    if (t._pk.length && added.length && removed.length) {
      const oldByKey = new Map(removed.map((r) => [t._pkKey(r), r]));
      const still = [];
      for (const r of added) {
        const k = t._pkKey(r);
        const old = oldByKey.get(k);
        if (old === undefined) still.push(r);
        else {
          oldByKey.delete(k);
          updated.push([old, r]);
        }
      }
      added = still;
      removed = [...oldByKey.values()];
    }
    for (const r of removed) this._fire('delete', t.name, [r, event]);
    for (const [o, n] of updated) this._fire('update', t.name, [o, n, event]);
    for (const r of added) this._fire('insert', t.name, [r, event]);
  }

  _fire(kind, table, args) {
    if (this.emit) this.emit(kind, table, args);
  }
}
