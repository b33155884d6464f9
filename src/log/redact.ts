/**
 * Secret redaction for log records: every value under a secret key (`agent_token`,
 * `password`, `oci_pull_secret`, …), at any depth of plain objects and arrays, becomes `***`.
 *
 * One walk per record, no path parsing: pino's own `redact` option re-parses each of its paths
 * on every log call, and its `*` wildcards reach a fixed depth only. The walk copies what it
 * changes (the caller's objects are never modified) and returns the same object when there was
 * nothing to hide.
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

function walk(input: unknown, depth: number, seen: Set<object>, serializeError: ErrorSerializer): unknown {
  // An Error prints its serialized form (type, message, stack, own fields such as `details`).
  const value = input instanceof Error ? { ...serializeError(input) } : input;
  if (!isWalkable(value)) return value;
  if (depth >= MAX_DEPTH) return '[too deep to log]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      let out: unknown[] | undefined;
      for (let i = 0; i < value.length; i++) {
        const next = walk(value[i], depth + 1, seen, serializeError);
        if (next !== value[i]) (out ??= value.slice())[i] = next;
      }
      return out ?? value;
    }
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(value)) {
      const current = value[key];
      const next = SECRET.has(key.toLowerCase())
        ? (current === undefined || current === null || current === '' ? current : CENSOR)
        : walk(current, depth + 1, seen, serializeError);
      if (next !== current) (out ??= { ...value })[key] = next;
    }
    return out ?? value;
  } finally {
    seen.delete(value);
  }
}

/**
 * `value` with every secret-keyed value replaced by `***` (a copy where needed) and every
 * Error in it turned into its serialized record.
 */
export function redactRecord<T>(value: T, serializeError: ErrorSerializer = plainError): T {
  return walk(value, 0, new Set(), serializeError) as T;
}
