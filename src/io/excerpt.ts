/**
 * A short, readable excerpt of what a server sent with an error status, fit for an error
 * message: error pages are often HTML, can be long, may carry terminal escapes or other control
 * characters, and may echo the request (signed query included).
 * @module
 */
import { hideSecrets } from './url.ts';

/** Longest excerpt, in characters. */
export const EXCERPT_CHARS = 200;
/** Bytes of an error body read to make the excerpt (the rest is never read). */
export const EXCERPT_READ_BYTES = 4096;

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

// What a person would read of an error page: no markup (nor script and style contents),
// entities decoded, no terminal escapes, control or invisible formatting characters, whitespace
// folded.
function readable(raw: string): string {
  return raw
    .replace(/\uFFFD+$/, '') // a character cut by the read limit
    .replace(/<(script|style)\b[\s\S]*?(?:<\/\1\s*>|$)/gi, ' ')
    .replace(/<!--[\s\S]*?(?:-->|$)/g, ' ')
    .replace(/<\/?[a-zA-Z!?][^>]*(?:>|$)/g, ' ')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (entity, name: string) => decodeEntity(name) ?? entity)
    .replace(/\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])/g, '')
    .replace(/[\u0000-\u0008\u000e-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

/** The readable text of `bytes` (UTF-8), each of `secrets` replaced by `…`, cut to EXCERPT_CHARS with a trailing `…`. */
export function bodyExcerpt(bytes: Uint8Array, secrets: readonly string[] = []): string {
  const text = hideSecrets(readable(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')), secrets);
  const chars = Array.from(text);
  return chars.length > EXCERPT_CHARS ? `${chars.slice(0, EXCERPT_CHARS - 1).join('').trimEnd()}…` : text;
}

// A numeric entity of a control character decodes to one, removed by the next step.
function decodeEntity(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (lower.startsWith('#')) {
    const code = lower.startsWith('#x') ? Number.parseInt(lower.slice(2), 16) : Number.parseInt(lower.slice(1), 10);
    return Number.isInteger(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : undefined;
  }
  return ENTITIES[lower];
}
