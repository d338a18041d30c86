// Type declarations of stdb's TypeScript / JavaScript client SDK (docs/client-typescript.md).

/** A row of a table: column name -> value (u64/i64/timestamp as bigint, identity/bytes as
 * Uint8Array, option<T> as T | null, array<T> as T[]). */
export type Row = Readonly<Record<string, Value>>;
export type Value = null | boolean | number | bigint | string | Uint8Array | Value[];

/** What caused a change; `reducer` and `offset` are null for a subscription's (re)applied rows,
 * `reducer` is '' for SQL DML. */
export interface Event {
  readonly reducer: string | null;
  readonly caller: Uint8Array | null;
  readonly status: string;
  readonly offset: bigint | null;
  readonly timestamp: bigint | null;
  readonly requestId: number | null;
}

/** Where identity tokens are kept, keyed by server (`ws://host:port`). */
export interface TokenStorage {
  get(key: string): string | null | Promise<string | null>;
  set(key: string, token: string): void | Promise<void>;
}

export interface ReconnectOptions {
  /** First delay (ms, default 100); doubled each attempt up to maxDelayMs (default 10000), each
   * delay drawn at random from its upper half (jitter). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Default Infinity. */
  maxAttempts?: number;
  /** Called before each wait with the attempt (from 1) and its delay in ms: for a status line. */
  onRetry?: (attempt: number, delayMs: number) => void;
}

export interface ConnectOptions {
  /** `ws://host:port` (or `wss://`). */
  url: string;
  database: string;
  /** A token from an earlier connection (else the storage's, else a new identity). */
  token?: string | null;
  /** Updates and outcomes only once durable. */
  confirmed?: boolean;
  /** The largest message this client reads, 65536 to 16777216 bytes (default 16 MiB). */
  maxMessage?: number;
  /** Reconnect with back-off and resubscribe (default true); false: no reconnecting. */
  reconnect?: boolean | ReconnectOptions;
  /** Token storage: default localStorage in a browser, the credentials file in Node; null: none. */
  storage?: TokenStorage | null;
  connectTimeoutMs?: number;
  /** A WebSocket class (default: the global one, else the `ws` package in Node). */
  WebSocket?: unknown;
  onConnect?: (conn: DbConnection, identity: Uint8Array, token: string) => void;
  onDisconnect?: (reason: string) => void;
  onReconnect?: (conn: DbConnection) => void;
  onError?: (error: StdbError) => void;
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';
/** Calling it removes the callback. */
export type Off = () => void;

export interface QueryResult {
  columns: string[];
  /** Each column's type name (`u64`, `timestamp`, `option<string>`, ...), as the server names it. */
  types: string[];
  rows: Value[][];
  plan: string[];
}

export interface PublishResult {
  createdTables: string[];
  alteredTables: string[];
  reducers: string[];
  unsubscribed: number;
}

export interface ColumnDescription { name: string; type: string; auto_inc: boolean }
export interface TableDescription {
  name: string;
  columns: ColumnDescription[];
  primary_key: string[];
  indexes: { name: string; columns: string[]; kind: string; unique: boolean }[];
  public: boolean;
  scheduled: string | null;
  visibility: string[];
}
export interface ReducerDescription { name: string; params: { name: string; type: string }[]; lifecycle: string | null }
export interface ModuleDescription { tables: TableDescription[]; reducers: ReducerDescription[]; owner: Uint8Array }

export class ReducerOutcome {
  readonly reducer: string;
  /** 'committed', 'failed', 'trap', 'out_of_fuel' or 'timeout'. */
  readonly status: string;
  readonly message: string | null;
  readonly offset: bigint | null;
  readonly timestamp: bigint;
  get ok(): boolean;
  /** This outcome if it committed; throws ReducerError otherwise. */
  raiseForStatus(): this;
}

export class Subscription {
  readonly queries: string[];
  queryIds: number[];
  active: boolean;
  /** Resolves once the queries' rows are in the cache; rejects with the server's error. */
  applied: Promise<Subscription>;
  unsubscribe(): Promise<void>;
}

export class TableCache<R extends Row = Row> implements Iterable<R> {
  readonly name: string;
  readonly columns: string[];
  readonly types: string[];
  readonly primaryKey: string[];
  [Symbol.iterator](): Iterator<R>;
  rows(): R[];
  count(): number;
  /** By primary key (an array for a composite key); null when absent or the table has none. */
  find(key: Value | Value[]): R | null;
}

export class ClientCache {
  table(name: string): TableCache;
  queryIds(): number[];
}

export class DbConnection {
  readonly url: string;
  readonly database: string;
  readonly identity: Uint8Array;
  readonly identityHex: string;
  readonly token: string;
  readonly connectionId: Uint8Array;
  readonly state: ConnectionState;
  readonly closeReason: string | null;
  readonly module: ModuleDescription | null;
  readonly cache: ClientCache;

  table<R extends Row = Row>(name: string): TableCache<R>;
  onInsert<R extends Row = Row>(table: string, fn: (row: R, event: Event) => void): Off;
  onDelete<R extends Row = Row>(table: string, fn: (row: R, event: Event) => void): Off;
  onUpdate<R extends Row = Row>(table: string, fn: (oldRow: R, newRow: R, event: Event) => void): Off;
  onConnect(fn: (conn: DbConnection, identity: Uint8Array, token: string) => void): Off;
  onDisconnect(fn: (reason: string) => void): Off;
  onReconnect(fn: (conn: DbConnection) => void): Off;
  onError(fn: (error: StdbError) => void): Off;

  call(reducer: string, ...args: unknown[]): Promise<ReducerOutcome>;
  query(sql: string): Promise<QueryResult>;
  subscribe(...queries: string[]): Subscription;
  describe(): Promise<ModuleDescription | null>;
  publish(wasm: Uint8Array | ArrayBuffer): Promise<PublishResult>;
  close(): Promise<void>;
}

export function connect(options: ConnectOptions): Promise<DbConnection>;

export function toHex(bytes: Uint8Array): string;
export function fromHex(hex: string): Uint8Array;
/** A µs timestamp as a Date (millisecond precision). */
export function toDate(micros: bigint | number): Date;
export function fromDate(date: Date | number): bigint;

export function memoryStorage(): TokenStorage;
export function localStorageStorage(prefix?: string): TokenStorage;
export function fileStorage(path?: string): TokenStorage;
export function defaultStorage(): TokenStorage;

export const SUBPROTOCOL: string;
export const MAX_MESSAGE_BYTES: number;
export const MIN_MAX_MESSAGE: number;

export class StdbError extends Error {
  static code: string;
  readonly code: string;
  readonly detail: string;
  readonly hint: string | null;
  constructor(detail: string, opts?: { hint?: string | null; code?: string });
}
export class DataError extends StdbError {}
export class ConstraintError extends StdbError {}
export class SchemaError extends StdbError {}
export class ModuleError extends StdbError {}
export class QueryError extends StdbError {}
export class ProtocolError extends StdbError {}
export class AuthError extends StdbError {}
export class StorageError extends StdbError {}
export class InternalError extends StdbError {}
export class TransactionError extends StdbError {}
export class ConnectionLost extends StdbError {}
export class ReducerError extends StdbError {
  readonly reducer: string;
  /** 'error', 'trap', 'out_of_fuel' or 'timeout'. */
  readonly kind: string;
  /** The reducer's own message. */
  readonly reducerMessage: string;
}
export class RateLimited extends StdbError {
  /** Seconds to wait before sending the request again. */
  readonly retryAfter: number;
}
export function errorFromMessage(msg: { code?: string; detail?: string; hint?: string | null; retry_after?: number }): StdbError;
