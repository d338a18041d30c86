// The wire protocol (docs/protocol.md): one CBOR map per binary websocket frame.

import { Encoder } from 'cbor-x';
import { ProtocolError, StdbError } from './errors.js';

export const SUBPROTOCOL = 'v1.cbor.stdb';
export const MAX_MESSAGE_BYTES = 16 << 20;
export const MIN_MAX_MESSAGE = 64 << 10;

// 64-bit integers decode as bigint; objects go out as CBOR maps with text keys; Uint8Array as bytes
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint', tagUint8Array: false });

/** One client message as CBOR bytes. */
export function encode(type, fields) {
  return cbor.encode({ ...fields, type });
}

/** A server message: a CBOR map with a text `type`; ProtocolError otherwise. */
export function decode(data) {
  if (typeof data === 'string') throw new ProtocolError('the server sent a text frame; the protocol is CBOR in binary frames');
  let msg;
  try {
    msg = cbor.decode(data instanceof Uint8Array ? data : new Uint8Array(data));
  } catch (e) {
    throw new ProtocolError(`a server message is not valid CBOR: ${e.message}`);
  }
  if (msg === null || typeof msg !== 'object' || typeof msg.type !== 'string') {
    throw new ProtocolError('a server message is a CBOR map with a text field "type"');
  }
  return msg;
}

export function checkMaxMessage(n) {
  if (!Number.isInteger(n) || n < MIN_MAX_MESSAGE || n > MAX_MESSAGE_BYTES) {
    throw new ProtocolError(`maxMessage must be a whole number of bytes from ${MIN_MAX_MESSAGE} to ${MAX_MESSAGE_BYTES}, got ${n}`);
  }
  return n;
}

/** The database's websocket URL: `ws://host:port/v1/database/NAME?...` (token as a query
 * parameter: browsers cannot set an Authorization header on a websocket). */
export function databaseUrl(url, database, { confirmed = false, maxMessage = MAX_MESSAGE_BYTES, token = null } = {}) {
  if (!/^wss?:\/\//.test(url)) {
    throw new StdbError(`server URL must start with ws:// or wss://, got ${JSON.stringify(url)}`, { code: 'bad_url' });
  }
  let base = url.replace(/\/+$/, '');
  if (!base.includes('/v1/database/')) base += `/v1/database/${encodeURIComponent(database)}`;
  const q = [];
  if (confirmed) q.push('confirmed=true');
  if (maxMessage !== MAX_MESSAGE_BYTES) q.push(`max_message=${maxMessage}`);
  if (token) q.push(`token=${encodeURIComponent(token)}`);
  return q.length ? `${base}?${q.join('&')}` : base;
}

/** The server part of a URL (`ws://host:port`): tokens belong to a server. */
export function serverKey(url) {
  const m = /^(wss?:\/\/[^/?#]+)/i.exec(url);
  return (m ? m[1] : url).toLowerCase();
}

// messages sent in parts: type -> [the field that is cut, the row lists of each entry]
export const PARTED = {
  OneOffQueryResult: ['rows', []],
  SubscribeApplied: ['queries', ['rows']],
  TransactionUpdate: ['updates', ['deletes', 'inserts']],
};

/** The message that `parts` were cut from (docs/protocol.md, "Large results: parts"): rows
 * concatenated; a part's first entry continues the previous part's last when their query ids match. */
export function joinParts(parts) {
  const msg = { ...parts[0], more: false };
  const [field, lists] = PARTED[msg.type];
  if (!lists.length) {
    msg[field] = parts.flatMap((p) => p[field]);
    return msg;
  }
  const entries = [];
  parts.forEach((p, i) => {
    let items = p[field];
    const last = entries[entries.length - 1];
    if (i && items.length && last && items[0].query_id === last.query_id) {
      for (const name of lists) last[name].push(...items[0][name]);
      items = items.slice(1);
    }
    for (const x of items) {
      const e = { ...x };
      for (const name of lists) e[name] = [...x[name]];
      entries.push(e);
    }
  });
  msg[field] = entries;
  return msg;
}
