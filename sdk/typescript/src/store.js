// A table's rows as an external store (subscribe / getSnapshot), the shape React's
// useSyncExternalStore takes (src/react.js), and usable without React: the snapshot is one array
// per change of the table (the same array between changes), rebuilt only when asked for.

/** The rows of `conn.table(table)` as a store: `subscribe(listener)` → unsubscribe, and
 * `getSnapshot()` → the rows (a new array after each transaction that changed the table). */
export function tableStore(conn, table) {
  let version = 0;
  let built = -1;
  let snapshot = [];
  return {
    subscribe(listener) {
      // a transaction's callbacks come one row at a time: each bumps the version, and React
      // reads one snapshot after the batch
      const changed = () => { version++; listener(); };
      const offs = [conn.onInsert(table, changed), conn.onDelete(table, changed), conn.onUpdate(table, changed)];
      return () => { for (const off of offs) off(); };
    },
    getSnapshot() {
      if (built !== version) {
        snapshot = conn.table(table).rows();
        built = version;
      }
      return snapshot;
    },
  };
}
