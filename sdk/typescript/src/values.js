// Values: identities and bytes as Uint8Array (hex helpers), timestamps as µs bigint, u64/i64 as
// bigint, options as T | null.  CBOR decodes small integers as numbers whatever the column type,
// so rows are normalised by the column types of the module's description (docs/row-format.md).

import { DataError } from './errors.js';

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex of bytes (an identity is 64 hex digits). */
export function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

/** Bytes from hex digits (an optional 0x prefix); DataError if they are not hex. */
export function fromHex(hex) {
  const h = hex.startsWith('0x') ? hex.slice(2) : hex;
  if (h.length % 2 || !/^[0-9a-fA-F]*$/.test(h)) throw new DataError(`not hex digits: ${JSON.stringify(hex.slice(0, 40))}`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A timestamp (µs since the epoch, bigint or number) as a Date (millisecond precision). */
export function toDate(micros) {
  return new Date(Number(BigInt(micros) / 1000n));
}

/** A Date (or ms number) as a timestamp in µs. */
export function fromDate(date) {
  return BigInt(typeof date === 'number' ? Math.trunc(date) : date.getTime()) * 1000n;
}

const BIG = new Set(['u64', 'i64', 'timestamp']);

/** A decoded CBOR value as the SDK hands it out for a column of type `type`. */
export function normalize(type, v) {
  if (v == null) return null;
  if (type.startsWith('option<')) return normalize(type.slice(7, -1), v);
  if (type.startsWith('array<')) {
    const inner = type.slice(6, -1);
    return Array.isArray(v) ? v.map((x) => normalize(inner, x)) : v;
  }
  if (BIG.has(type)) return typeof v === 'number' ? BigInt(v) : v;
  if (typeof v === 'bigint' && /^[iu](8|16|32)$/.test(type)) return Number(v);
  if (v instanceof Uint8Array && v.constructor !== Uint8Array) return new Uint8Array(v.buffer, v.byteOffset, v.length);
  return v;
}

/** An argument as it goes out: integers beyond 32 bits as bigint (cbor-x writes such numbers as
 * floats), arrays element by element. */
export function outgoing(v) {
  if (typeof v === 'number' && Number.isInteger(v) && (v > 0xffffffff || v < -0x80000000)) {
    if (!Number.isSafeInteger(v)) throw new DataError(`${v} is not a safe integer: pass a bigint for 64-bit values`);
    return BigInt(v);
  }
  if (Array.isArray(v)) return v.map(outgoing);
  if (v === undefined) return null;
  return v;
}

/** A stable text key for a value (rows are counted and found by it). */
export function valueKey(v) {
  return JSON.stringify(v, (_k, x) => {
    if (typeof x === 'bigint') return `${x}n`;
    if (typeof x === 'number' && !Number.isFinite(x)) return `${x}f`;
    if (x instanceof Uint8Array) return `0x${toHex(x)}`;
    return x;
  });
}
