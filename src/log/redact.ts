/**
 * Secret redaction for log records: every value under a secret key (`agent_token`,
 * `password`, `oci_pull_secret`, …), at any depth of plain objects and arrays, becomes `***`.
 *
 * One walk per record, no path parsing: pino's own `redact` option re-parses each of its paths
 * on every log call, and its `*` wildcards reach a fixed depth only. The walk copies what it
 * changes (the caller's objects are never modified) and returns the same object when there was
 * nothing to hide or cut. The same walk bounds what one record prints (`LOG_LIMITS`).
 * @module
 */

export const CENSOR = '***';

/** Keys whose values are secret wherever they appear (compared case-insensitively). */
export const SECRET_KEYS: readonly string[] = [
  'agent_token', 'token', 'access_token', 'refresh_token', 'identitytoken', 'password', 'passwd',
  'oci_pull_secret', 'pull_secret', 'image_pull_secret', 'auth', 'authorization', 'proxy-authorization',
  'image_request_authorization', 'configdrive', 'bootc_authorized_keys', 'private_key', 'secret',
];

const SECRET = new Set(SECRET_KEYS.map((k) => k.toLowerCase()));
// Deeper than any record we log; beyond it a subtree is replaced, never printed unchecked.
const MAX_DEPTH = 12;

/**
 * How much one record may print. A record is one line of a log kept in RAM (the ramdisk's
 * tmpfs), and some of what it holds comes from clients (command parameters, error messages
 * naming their keys): beyond these a value is cut, with a note saying how much was left out.
 */
export const LOG_LIMITS = {
  /** Characters of one string (error stacks and ordinary messages fit). */
  string: 8 * 1024,
  /** Keys of one object, items of one array. */
  entries: 256,
  /** Values in one record, all depths together. */
  values: 4096,
  /** Characters of all strings and keys of one record together. */
  characters: 64 * 1024,
} as const;

/** How an Error becomes a plain record (pino's `stdSerializers.err` in the logger). */
export type ErrorSerializer = (err: Error) => object;

const plainError: ErrorSerializer = (err) => ({ type: err.name, message: err.message, stack: err.stack, ...Object.fromEntries(Object.entries(err)) });

// What JSON.stringify would print key by key: objects and arrays, but not byte buffers, nor
// values that print themselves (toJSON: Date, URL, Buffer), nor Maps and Sets (printed `{}`).
function isWalkable(value: unknown): value is Record<string, unknown> | unknown[] {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return true;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Map || value instanceof Set) return false;
  return typeof (value as { toJSON?: unknown }).toJSON !== 'function';
}

/** `text` cut to `max` characters, with a note of how many were left out. */
export function truncateText(text: string, max: number = LOG_LIMITS.string): string {
  return text.length <= max ? text : `${text.slice(0, max)}…[${text.length - max} more characters]`;
}

// One record's walk: what has been seen on the way down (cycles) and what is left to print.
interface Walk {
  seen: Set<object>;
  serializeError: ErrorSerializer;
  values: number;
  characters: number;
}

function walkString(text: string, state: Walk): string {
  const max = Math.max(0, Math.min(LOG_LIMITS.string, state.characters));
  const out = truncateText(text, max);
  state.characters -= Math.min(text.length, max);
  return out;
}

function walkArray(value: unknown[], depth: number, state: Walk): unknown[] {
  let out: unknown[] | undefined;
  const shown = Math.min(value.length, LOG_LIMITS.entries);
  let i = 0;
  for (; i < shown && state.values > 0; i++) {
    const next = walk(value[i], depth + 1, state);
    if (next !== value[i]) (out ??= value.slice(0, shown))[i] = next;
  }
  if (i === value.length) return out ?? value;
  const kept = (out ?? value).slice(0, i);
  kept.push(`…[${value.length - i} more items not logged]`);
  return kept;
}

function walkObject(value: Record<string, unknown>, depth: number, state: Walk): Record<string, unknown> {
  const entries: [string, unknown][] = [];
  let changed = false;
  let cut = false;
  // for…in rather than Object.keys: an object with a million keys is not listed whole to log 256.
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (entries.length >= LOG_LIMITS.entries || state.values <= 0 || key.length > state.characters) {
      cut = true;
      break;
    }
    state.characters -= key.length;
    const current = value[key];
    const next = SECRET.has(key.toLowerCase())
      ? (current === undefined || current === null || current === '' ? current : CENSOR)
      : walk(current, depth + 1, state);
    if (next !== current) changed = true;
    entries.push([key, next]);
  }
  if (!changed && !cut) return value;
  const out = Object.fromEntries(entries);
  if (cut) out['…'] = 'more keys not logged';
  return out;
}

function walk(input: unknown, depth: number, state: Walk): unknown {
  state.values--;
  if (typeof input === 'string') return walkString(input, state);
  // An Error prints its serialized form (type, message, stack, own fields such as `details`).
  const value = input instanceof Error ? { ...state.serializeError(input) } : input;
  if (!isWalkable(value)) return value;
  if (depth >= MAX_DEPTH) return '[too deep to log]';
  if (state.values <= 0) return '[more not logged]';
  if (state.seen.has(value)) return '[circular]';
  state.seen.add(value);
  try {
    return Array.isArray(value) ? walkArray(value, depth, state) : walkObject(value, depth, state);
  } finally {
    state.seen.delete(value);
  }
}

/**
 * `value` with every secret-keyed value replaced by `***` (a copy where needed), every Error in
 * it turned into its serialized record, and cut to what one record may print (LOG_LIMITS).
 */
export function redactRecord<T>(value: T, serializeError: ErrorSerializer = plainError): T {
  return walk(value, 0, { seen: new Set(), serializeError, values: LOG_LIMITS.values, characters: LOG_LIMITS.characters }) as T;
}
