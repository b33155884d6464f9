/**
 * A tiny DER (ITU-T X.690 Distinguished Encoding Rules) encoder: just the types an X.509
 * certificate needs. Every function returns the complete TLV (tag, length, value) as a Buffer.
 * @module
 */

// Universal tags (X.690 §8, X.680 §8.6); bit 0x20 marks a constructed encoding.
const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

// Short form below 128 bytes, else 0x80 | number-of-length-bytes followed by the big-endian length.
function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with an arbitrary tag byte (single-byte tags only: numbers 0–30). */
export function tlv(tag: number, value: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

export function sequence(...items: readonly Uint8Array[]): Buffer {
  return tlv(TAG.SEQUENCE, Buffer.concat(items));
}

// DER SET OF: elements sorted by their encodings (X.690 §11.6).
export function set(...items: readonly Uint8Array[]): Buffer {
  const sorted = [...items].map((i) => Buffer.from(i)).sort(Buffer.compare);
  return tlv(TAG.SET, Buffer.concat(sorted));
}

export function boolean(value: boolean): Buffer {
  return tlv(TAG.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));
}

export function nullValue(): Buffer {
  return tlv(TAG.NULL, Buffer.alloc(0));
}

// Two's complement in the fewest bytes k with -2^(8k-1) <= n < 2^(8k-1) (X.690 §8.3).
export function integer(value: bigint | number): Buffer {
  const n = BigInt(value);
  let k = 1;
  while (n >= 1n << BigInt(8 * k - 1) || n < -(1n << BigInt(8 * k - 1))) k++;
  const bytes = Buffer.alloc(k);
  let rest = BigInt.asUintN(8 * k, n);
  for (let i = k - 1; i >= 0; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return tlv(TAG.INTEGER, bytes);
}

/** An INTEGER from unsigned big-endian bytes (serial numbers). */
export function unsignedInteger(bytes: Uint8Array): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = Buffer.from(bytes.subarray(start));
  const value = trimmed.length === 0 ? Buffer.from([0]) : trimmed;
  return tlv(TAG.INTEGER, (value[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), value]) : value);
}

// Base-128 with the continuation bit set on all but the last byte of each arc.
function base128(n: bigint): number[] {
  const out = [Number(n & 0x7fn)];
  for (let rest = n >> 7n; rest > 0n; rest >>= 7n) out.unshift(Number(rest & 0x7fn) | 0x80);
  return out;
}

/** An OBJECT IDENTIFIER from dotted form, e.g. `2.5.29.17`. */
export function oid(dotted: string): Buffer {
  if (!/^[0-2](\.\d+)+$/.test(dotted)) throw new RangeError(`Invalid object identifier: ${dotted}`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [first, second, ...rest] = arcs as [bigint, bigint, ...bigint[]];
  if (first < 2n && second > 39n) throw new RangeError(`Invalid object identifier: ${dotted}`);
  const bytes = [...base128(first * 40n + second), ...rest.flatMap(base128)];
  return tlv(TAG.OID, Buffer.from(bytes));
}

export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7) throw new RangeError('unusedBits must be 0–7');
  return tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

export function octetString(bytes: Uint8Array): Buffer {
  return tlv(TAG.OCTET_STRING, bytes);
}

export function utf8String(text: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(text, 'utf8'));
}

export function printableString(text: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text)) throw new RangeError(`Not a PrintableString: ${text}`);
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(text, 'latin1'));
}

export function ia5String(text: string): Buffer {
  if (!/^[\x00-\x7f]*$/.test(text)) throw new RangeError(`Not an IA5String: ${text}`);
  return tlv(TAG.IA5_STRING, Buffer.from(text, 'latin1'));
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

function timeDigits(date: Date): string {
  return `${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}`;
}

/** UTCTime `YYMMDDHHMMSSZ` (years 1950–2049 only). */
export function utcTime(date: Date): Buffer {
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 2049) throw new RangeError(`UTCTime cannot hold year ${year}`);
  return tlv(TAG.UTC_TIME, Buffer.from(`${pad(year % 100)}${timeDigits(date)}Z`, 'latin1'));
}

/** GeneralizedTime `YYYYMMDDHHMMSSZ` (no fractional seconds, as RFC 5280 requires). */
export function generalizedTime(date: Date): Buffer {
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${pad(date.getUTCFullYear(), 4)}${timeDigits(date)}Z`, 'latin1'));
}

// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
export function x509Time(date: Date): Buffer {
  const year = date.getUTCFullYear();
  return year >= 1950 && year <= 2049 ? utcTime(date) : generalizedTime(date);
}

/** `[n] EXPLICIT`: a constructed context-specific tag wrapping a complete TLV. */
export function explicit(tagNumber: number, inner: Uint8Array): Buffer {
  return tlv(0xa0 | checkTagNumber(tagNumber), inner);
}

/** `[n] IMPLICIT` primitive: the context tag replaces the universal tag of a primitive value. */
export function implicit(tagNumber: number, value: Uint8Array): Buffer {
  return tlv(0x80 | checkTagNumber(tagNumber), value);
}

function checkTagNumber(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`Tag number ${n} needs the long form`);
  return n;
}
