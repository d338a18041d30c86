// The optional React entry point: `import { useTable } from '@stdb/client/react'` (React >= 18 is
// the application's, a peer dependency; the rest of the SDK never imports it).
import { useMemo, useSyncExternalStore } from 'react';
import { tableStore } from './store.js';

export { tableStore };

/** The cached rows of `table` on `conn`, re-rendering the component after each transaction that
 * changes them (subscribe to the rows first: the hook only reads the client cache). */
export function useTable(conn, table) {
  const store = useMemo(() => tableStore(conn, table), [conn, table]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}
