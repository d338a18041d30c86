// The one error hierarchy of the stdb client, mirroring stdb/errors.py: every error has a stable
// `code`, a `detail` naming what was wrong and an optional `hint` saying what to do about it.

export class StdbError extends Error {
  /** @param {string} detail @param {{hint?: string|null, code?: string}} [opts] */
  constructor(detail, opts = {}) {
    super(opts.hint ? `${detail} (hint: ${opts.hint})` : detail);
    this.name = new.target.name;
    this.code = opts.code ?? new.target.code;
    this.detail = detail;
    this.hint = opts.hint ?? null;
  }
}
StdbError.code = 'stdb_error';

const kind = (name, code) => {
  const cls = { [name]: class extends StdbError {} }[name];
  cls.code = code;
  return cls;
};

export const DataError = kind('DataError', 'data_error');
export const ConstraintError = kind('ConstraintError', 'constraint_violation');
export const SchemaError = kind('SchemaError', 'schema_error');
export const ModuleError = kind('ModuleError', 'module_error');
export const QueryError = kind('QueryError', 'query_error');
export const ProtocolError = kind('ProtocolError', 'protocol_error');
export const AuthError = kind('AuthError', 'auth_error');
export const StorageError = kind('StorageError', 'storage_error');
export const InternalError = kind('InternalError', 'internal_error');
export const TransactionError = kind('TransactionError', 'transaction_error');
/** The connection ended (or is not open): the request was not answered. */
export const ConnectionLost = kind('ConnectionLost', 'connection_lost');

/** A reducer ran and failed (ReducerOutcome.raiseForStatus), or a call the server could not run. */
export class ReducerError extends StdbError {
  constructor(detail, opts = {}) {
    super(detail, opts);
    this.reducer = opts.reducer ?? '';
    this.kind = opts.kind ?? 'error';
    this.reducerMessage = opts.message ?? '';
  }
}
ReducerError.code = 'reducer_error';

/** A call or query past the database's rate limit: send it again after `retryAfter` seconds. */
export class RateLimited extends StdbError {
  constructor(detail, opts = {}) {
    super(detail, opts);
    this.retryAfter = opts.retryAfter ?? 0;
  }
}
RateLimited.code = 'rate_limited';

const CLASSES = [DataError, ConstraintError, SchemaError, ModuleError, QueryError, ProtocolError, AuthError,
  StorageError, InternalError, TransactionError, ConnectionLost, ReducerError];

/** The error a server `Error` message stands for (an unknown code keeps its code on a StdbError). */
export function errorFromMessage(msg) {
  const code = String(msg.code || StdbError.code);
  const detail = String(msg.detail ?? '');
  const hint = msg.hint == null ? null : String(msg.hint);
  if (code === RateLimited.code) {
    return new RateLimited(detail, { hint, retryAfter: typeof msg.retry_after === 'number' ? msg.retry_after : 0 });
  }
  const cls = CLASSES.find((c) => c.code === code);
  return cls ? new cls(detail, { hint }) : new StdbError(detail, { hint, code });
}
