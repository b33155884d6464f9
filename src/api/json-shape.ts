/**
 * A JSON body's structure measured before it is parsed: JSON.parse, the schemas and the logs all
 * spend time and memory per key, so a body of a million keys is refused after one pass over its
 * bytes. Strings are skipped with indexOf (a memchr), so a 90 MB base64 config drive costs
 * next to nothing. Malformed JSON is left for JSON.parse to report.
 * @module
 */
import { AgentError } from '../errors.ts';

// The bytes that matter: `"` `\` `{` `[` `}` `]` `,`.
const BYTE = { quote: 0x22, backslash: 0x5c, openObject: 0x7b, openArray: 0x5b, closeObject: 0x7d, closeArray: 0x5d, comma: 0x2c } as const;

// Index of the quote that closes the string opening at `start`, or -1 when it does not close.
function stringEnd(body: Uint8Array, start: number): number {
  let at = start + 1;
  for (;;) {
    const quote = body.indexOf(BYTE.quote, at);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (body[quote - 1 - backslashes] === BYTE.backslash) backslashes++;
    if (backslashes % 2 === 0) return quote;
    at = quote + 1;
  }
}

/**
 * Throws REQUEST_JSON_TOO_COMPLEX (413) when `body` holds more than `maxEntries` entries (object
 * members and array items; an empty object or array counts one) or nests deeper than `maxDepth`.
 * Each `{` or `[` counts its first entry and each comma one more.
 */
export function checkJsonShape(body: Uint8Array, maxEntries: number, maxDepth: number): void {
  let entries = 0;
  let depth = 0;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i];
    if (byte === BYTE.quote) {
      const end = stringEnd(body, i);
      if (end < 0) return;
      i = end;
    } else if (byte === BYTE.openObject || byte === BYTE.openArray) {
      if (++depth > maxDepth) throw new AgentError('REQUEST_JSON_TOO_COMPLEX', `Request body is nested deeper than ${maxDepth} levels`);
      entries++;
    } else if (byte === BYTE.closeObject || byte === BYTE.closeArray) {
      depth--;
    } else if (byte === BYTE.comma) {
      entries++;
    } else {
      continue;
    }
    if (entries > maxEntries) {
      throw new AgentError('REQUEST_JSON_TOO_COMPLEX', `Request body has more than ${maxEntries} JSON entries (object members and array items; api_max_json_entries)`);
    }
  }
}
