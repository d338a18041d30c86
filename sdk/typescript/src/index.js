// stdb's TypeScript / JavaScript client SDK (docs/client-typescript.md).
export { connect, DbConnection, ReducerOutcome, Subscription } from './connection.js';
export { ClientCache, TableCache } from './cache.js';
export { toHex, fromHex, toDate, fromDate } from './values.js';
export { memoryStorage, localStorageStorage, fileStorage, defaultStorage } from './storage.js';
export { SUBPROTOCOL, MAX_MESSAGE_BYTES, MIN_MAX_MESSAGE } from './protocol.js';
export {
  StdbError, DataError, ConstraintError, SchemaError, ModuleError, QueryError, ProtocolError, AuthError,
  StorageError, InternalError, TransactionError, ConnectionLost, ReducerError, RateLimited, errorFromMessage,
} from './errors.js';
