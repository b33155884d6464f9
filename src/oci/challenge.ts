/**
 * RFC 7235 `WWW-Authenticate` parsing: several challenges per header or across headers,
 * case-insensitive schemes and parameter names, quoted strings with `\` escapes and commas.
 * @module
 */

export interface Challenge {
  /** Lower case: `bearer`, `basic`, … */
  scheme: string;
  /** Parameter names in lower case; values unquoted. */
  params: Record<string, string>;
  token68?: string;
}

const TCHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}
  get done(): boolean {
    return this.pos >= this.text.length;
  }
  peek(): string {
    return this.text[this.pos] ?? '';
  }
  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  skipSpacesAndCommas(): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++;
  }
  token(): string {
    const start = this.pos;
    while (!this.done && TCHAR.test(this.peek())) this.pos++;
    return this.text.slice(start, this.pos);
  }
  quoted(): string | undefined {
    if (this.peek() !== '"') return undefined;
    this.pos++;
    let out = '';
    while (!this.done) {
      const c = this.peek();
      this.pos++;
      if (c === '\\') {
        out += this.peek();
        this.pos++;
      } else if (c === '"') {
        return out;
      } else {
        out += c;
      }
    }
    return undefined; // unterminated
  }
}

// Try `name = value` at the current position; rewinds and returns undefined if it is not one.
function readParam(s: Scanner): [string, string] | undefined {
  const start = s.pos;
  const name = s.token();
  s.skipSpaces();
  if (name === '' || s.peek() !== '=') {
    s.pos = start;
    return undefined;
  }
  s.pos++;
  s.skipSpaces();
  const value = s.peek() === '"' ? s.quoted() : s.token();
  if (value === undefined) {
    s.pos = start;
    return undefined;
  }
  return [name.toLowerCase(), value];
}

function readToken68(s: Scanner): string | undefined {
  const start = s.pos;
  while (!s.done && TOKEN68_CHAR.test(s.peek())) s.pos++;
  while (s.peek() === '=') s.pos++;
  const end = s.pos;
  s.skipSpaces();
  if (end > start && (s.done || s.peek() === ',')) return s.text.slice(start, end);
  s.pos = start;
  return undefined;
}

function parseOne(text: string, out: Challenge[]): void {
  const s = new Scanner(text);
  for (;;) {
    s.skipSpacesAndCommas();
    if (s.done) return;
    const scheme = s.token();
    if (scheme === '') return; // garbage: keep what we have
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    s.skipSpaces();
    const first = readParam(s);
    if (!first) {
      const t68 = readToken68(s);
      if (t68 !== undefined) challenge.token68 = t68;
      continue;
    }
    challenge.params[first[0]] = first[1];
    for (;;) {
      s.skipSpaces();
      if (s.peek() !== ',') break;
      s.skipSpacesAndCommas();
      const param = readParam(s);
      if (!param) break; // the next thing is a new challenge's scheme
      challenge.params[param[0]] = param[1];
    }
  }
}

/** Parse one or several `WWW-Authenticate` header values. */
export function parseWwwAuthenticate(headers: string | readonly string[] | undefined): Challenge[] {
  const values = headers === undefined ? [] : typeof headers === 'string' ? [headers] : headers;
  const out: Challenge[] = [];
  for (const value of values) parseOne(value, out);
  return out;
}
