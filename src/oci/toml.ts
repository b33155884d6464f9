/**
 * The TOML subset registries.conf uses: `[table]`, `[[array.of.tables]]`, `key = value` with
 * bare/quoted/dotted keys, basic and literal strings, booleans, integers, arrays (multi-line,
 * trailing comma) and comments. Inline tables and multi-line strings are refused, not guessed.
 * @module
 */

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable { [key: string]: TomlValue }

export class TomlError extends Error {
  constructor(message: string, readonly line: number) {
    super(`line ${line}: ${message}`);
  }
}

const BARE_KEY = /[A-Za-z0-9_-]/;

class Parser {
  pos = 0;
  constructor(readonly text: string) {}

  get line(): number {
    return this.text.slice(0, this.pos).split('\n').length;
  }
  fail(message: string): never {
    throw new TomlError(message, this.line);
  }
  peek(offset = 0): string {
    return this.text[this.pos + offset] ?? '';
  }
  skipInline(): void {
    for (;;) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || c === '\r') this.pos++;
      else if (c === '#') while (this.pos < this.text.length && this.peek() !== '\n') this.pos++;
      else return;
    }
  }
  skipAll(): void {
    for (;;) {
      this.skipInline();
      if (this.peek() === '\n') this.pos++;
      else return;
    }
  }
  endOfLine(): void {
    this.skipInline();
    if (this.pos < this.text.length && this.peek() !== '\n') this.fail(`unexpected "${this.peek()}"`);
  }

  key(): string[] {
    const parts: string[] = [];
    for (;;) {
      this.skipInline();
      const c = this.peek();
      if (c === '"' || c === "'") parts.push(this.string());
      else {
        const start = this.pos;
        while (BARE_KEY.test(this.peek())) this.pos++;
        if (start === this.pos) this.fail('expected a key');
        parts.push(this.text.slice(start, this.pos));
      }
      this.skipInline();
      if (this.peek() !== '.') return parts;
      this.pos++;
    }
  }

  string(): string {
    const quote = this.peek();
    if (this.text.startsWith(quote.repeat(3), this.pos)) this.fail('multi-line strings are not supported');
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.peek();
      if (c === '' || c === '\n') this.fail('unterminated string');
      this.pos++;
      if (c === quote) return out;
      if (c === '\\' && quote === '"') {
        const e = this.peek();
        this.pos++;
        const simple: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };
        if (e in simple) out += simple[e];
        else if (e === 'u' || e === 'U') {
          const len = e === 'u' ? 4 : 8;
          const hex = this.text.slice(this.pos, this.pos + len);
          if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) this.fail('bad unicode escape');
          out += String.fromCodePoint(parseInt(hex, 16));
          this.pos += len;
        } else this.fail(`bad escape "\\${e}"`);
      } else out += c;
    }
  }

  value(): TomlValue {
    this.skipInline();
    const c = this.peek();
    if (c === '"' || c === "'") return this.string();
    if (c === '[') return this.array();
    if (c === '{') this.fail('inline tables are not supported');
    const word = /^[A-Za-z0-9_+.:-]+/.exec(this.text.slice(this.pos))?.[0] ?? '';
    this.pos += word.length;
    if (word === 'true') return true;
    if (word === 'false') return false;
    if (/^[+-]?(?:0|[1-9](?:_?[0-9])*)$/.test(word)) return Number(word.replace(/_/g, ''));
    return this.fail(`unsupported value "${word || c}"`);
  }

  array(): TomlValue[] {
    this.pos++;
    const out: TomlValue[] = [];
    for (;;) {
      this.skipAll();
      if (this.peek() === ']') {
        this.pos++;
        return out;
      }
      out.push(this.value());
      this.skipAll();
      if (this.peek() === ',') this.pos++;
      else if (this.peek() !== ']') this.fail('expected "," or "]" in array');
    }
  }
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && !Array.isArray(v);
}

// Walk to a table; through an array of tables, the last element (TOML semantics).
function descend(root: TomlTable, path: readonly string[], p: Parser): TomlTable {
  let table = root;
  for (const part of path) {
    let next = table[part];
    if (next === undefined) table[part] = next = {};
    if (Array.isArray(next)) next = next[next.length - 1];
    if (!isTable(next)) p.fail(`"${part}" is not a table`);
    table = next;
  }
  return table;
}

export function parseToml(text: string): TomlTable {
  const p = new Parser(text);
  const root: TomlTable = {};
  let current = root;
  for (;;) {
    p.skipAll();
    if (p.pos >= text.length) return root;
    if (p.peek() === '[') {
      const arrayTable = p.peek(1) === '[';
      p.pos += arrayTable ? 2 : 1;
      const path = p.key();
      if (p.peek() !== ']' || (arrayTable && p.peek(1) !== ']')) p.fail('unterminated table header');
      p.pos += arrayTable ? 2 : 1;
      p.endOfLine();
      const parent = descend(root, path.slice(0, -1), p);
      const last = path[path.length - 1]!;
      if (arrayTable) {
        const existing: TomlValue = parent[last] ?? (parent[last] = []);
        if (!Array.isArray(existing)) return p.fail(`"${last}" is not an array of tables`);
        const table: TomlTable = {};
        existing.push(table);
        current = table;
      } else {
        current = descend(parent, [last], p);
      }
      continue;
    }
    const key = p.key();
    if (p.peek() !== '=') p.fail('expected "="');
    p.pos++;
    const value = p.value();
    p.endOfLine();
    const target = descend(current, key.slice(0, -1), p);
    const name = key[key.length - 1]!;
    if (name in target) p.fail(`duplicate key "${name}"`);
    target[name] = value;
  }
}
