import type { DbConnection, Row } from './index.js';

/** The rows of a table as an external store (the shape of React's useSyncExternalStore). */
export interface TableStore<R = Row> {
  subscribe(listener: () => void): () => void;
  getSnapshot(): R[];
}

export function tableStore<R = Row>(conn: DbConnection, table: string): TableStore<R>;

/** The cached rows of `table`, re-rendered after each transaction that changes them. */
export function useTable<R = Row>(conn: DbConnection, table: string): R[];
