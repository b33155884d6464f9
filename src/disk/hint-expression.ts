/**
 * Parsing of root device hint values, following IPA's `device_hints.py` and the operator
 * grammar of oslo.utils `specs_matcher.py`.
 *
 * Where IPA accepts a hint but can never match it (`<or>` on `size` compares a float with a
 * string; `<range-in>` fails IPA's integer check), this module gives the operator its
 * documented meaning instead; anything malformed is `INVALID_ROOT_DEVICE_HINTS`.
 * @module
 */
import { AgentError } from '../errors.ts';

// Hint name → type (IPA `VALID_ROOT_DEVICE_HINTS`).
export const VALID_ROOT_DEVICE_HINTS = {
  size: 'int', model: 'str', wwn: 'str', serial: 'str', vendor: 'str', wwn_with_extension: 'str',
  wwn_vendor_extension: 'str', name: 'str', rotational: 'bool', hctl: 'str', by_path: 'str', tran: 'str',
} as const;
export type HintName = keyof typeof VALID_ROOT_DEVICE_HINTS;

export type NumericOp = '=' | '==' | '!=' | '>=' | '>' | '<=' | '<';
export type StringOp = 's==' | 's!=' | 's>=' | 's>' | 's<=' | 's<' | '<in>';

export type ParsedHint =
  | { name: HintName; kind: 'bool'; value: boolean }
  | { name: HintName; kind: 'number'; op: NumericOp | '<or>'; values: number[] }
  | { name: HintName; kind: 'range'; lo: number; hi: number; loInclusive: boolean; hiInclusive: boolean }
  | { name: HintName; kind: 'string'; op: StringOp | '<or>'; values: string[] }
  | { name: HintName; kind: 'all-in'; values: string[] }
  | { name: HintName; kind: 'numeric-string'; op: NumericOp; value: number };

// specs_matcher tries these in this order, so `==` wins over `=` and `<in>` over `<`.
const UNARY_OPS = ['==', '=', '!=', '<in>', '>=', '<=', '>', '<', 's==', 's!=', 's<=', 's<', 's>=', 's>'] as const;
const NUMERIC_OPS: ReadonlySet<string> = new Set(['=', '==', '!=', '>=', '>', '<=', '<']);

// oslo.utils strutils.bool_from_string(strict=True).
const TRUE_WORDS = new Set(['1', 't', 'true', 'on', 'y', 'yes']);
const FALSE_WORDS = new Set(['0', 'f', 'false', 'off', 'n', 'no']);

function invalid(message: string, details: Record<string, unknown> = {}): AgentError {
  return new AgentError('INVALID_ROOT_DEVICE_HINTS', message, { details });
}

/** Python's `urllib.parse.quote(s)`: like encodeURIComponent, but `/` stays and `!'()*` are escaped. */
export function pyQuote(value: string): string {
  return encodeURIComponent(value)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%2F/g, '/');
}

/** How IPA normalises a string on both sides of a comparison: trimmed, lower-cased, URL-quoted. */
export function normalizeHintValue(value: string): string {
  return pyQuote(value.trim().toLowerCase());
}

// Python float(): what the numeric operators of specs_matcher accept.
export function parseFloatStrict(value: string): number | undefined {
  const s = value.trim();
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i.test(s)) return undefined;
  return Number(s);
}

export function parseBoolStrict(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const word = String(value).trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return undefined;
}

interface Expression {
  op: string;
  rest: string;
}

// Split `"<op> value…"` into the leading operator (if any) and what follows it.
function splitOperator(expression: string): Expression {
  for (const op of ['<or>', '<all-in>', '<range-in>', ...UNARY_OPS]) {
    if (expression.startsWith(op)) return { op, rest: expression.slice(op.length).trim() };
  }
  return { op: '', rest: expression };
}

function parseSize(name: HintName, raw: unknown, expression: string): ParsedHint {
  const { op, rest } = splitOperator(expression);
  if (op === '<range-in>') {
    const m = /^([[(])\s*(\S+?)\s+(\S+?)\s*([\])])$/.exec(rest);
    const lo = m ? parseFloatStrict(m[2] ?? '') : undefined;
    const hi = m ? parseFloatStrict(m[3] ?? '') : undefined;
    if (!m || lo === undefined || hi === undefined || lo < 0 || lo > hi) {
      throw invalid(`Root device hint "${name}" needs "<range-in> [lo hi]" with brackets [ ] (inclusive) or ( ) (exclusive) and lo <= hi. Current value: ${String(raw)}`, { hint: name });
    }
    return { name, kind: 'range', lo, hi, loInclusive: m[1] === '[', hiInclusive: m[4] === ']' };
  }
  if (op !== '' && op !== '<or>' && !NUMERIC_OPS.has(op)) {
    throw invalid(`Root device hint "${name}" does not support the operator ${op}. Current value: ${String(raw)}`, { hint: name });
  }
  const parts = op === '<or>' ? rest.split('<or>').map((p) => p.trim()) : [rest];
  const values = parts.map((part) => {
    if (!/^\+?\d+$/.test(part)) {
      throw invalid(`Root device hint "${name}" is not an integer value. Current value: ${String(raw)}`, { hint: name });
    }
    const n = Number(part);
    if (n <= 0) throw invalid(`Root device hint "${name}" should be a positive integer. Current value: ${String(raw)}`, { hint: name });
    return n;
  });
  return { name, kind: 'number', op: op === '' ? '==' : (op as NumericOp | '<or>'), values };
}

// IPA prefixes a bare device name with /dev/ so `sda` and `/dev/sda` both match.
function withDevPrefix(name: HintName, op: string, value: string): string {
  return name === 'name' && op !== '<in>' && !value.startsWith('/dev/') ? `/dev/${value}` : value;
}

function parseString(name: HintName, raw: unknown, expression: string): ParsedHint {
  if (typeof raw !== 'string') {
    throw invalid(`Root device hint "${name}" is not a string value. Hint expression: ${JSON.stringify(raw)}`, { hint: name });
  }
  const { op, rest } = splitOperator(expression);
  if (op === '<range-in>') {
    throw invalid(`Root device hint "${name}" is a string; <range-in> only applies to "size"`, { hint: name });
  }
  if (NUMERIC_OPS.has(op)) {
    const value = parseFloatStrict(rest);
    if (value === undefined) {
      throw invalid(`Root device hint "${name}" uses the numeric operator ${op} with a non-numeric value. Current value: ${raw}`, { hint: name });
    }
    return { name, kind: 'numeric-string', op: op as NumericOp, value };
  }
  if (op === '<all-in>') {
    return { name, kind: 'all-in', values: rest.split(/\s+/).map((v) => normalizeHintValue(v)) };
  }
  const parts = op === '<or>' ? rest.split('<or>').map((p) => p.trim()) : [rest];
  if (parts.some((p) => p === '')) {
    throw invalid(`Root device hint "${name}" has an empty value. Current value: ${raw}`, { hint: name });
  }
  const strOp = op === '' ? 's==' : (op as StringOp | '<or>');
  return { name, kind: 'string', op: strOp, values: parts.map((p) => normalizeHintValue(withDevPrefix(name, strOp, p))) };
}

/** Parse one hint; throws `INVALID_ROOT_DEVICE_HINTS` naming the hint when it is malformed. */
export function parseHint(name: string, raw: unknown): ParsedHint {
  if (!Object.hasOwn(VALID_ROOT_DEVICE_HINTS, name)) {
    throw invalid(`The hints "${name}" are invalid. Valid hints are: "${Object.keys(VALID_ROOT_DEVICE_HINTS).join(', ')}"`, { hint: name });
  }
  const hint = name as HintName;
  if (VALID_ROOT_DEVICE_HINTS[hint] === 'bool') {
    const value = parseBoolStrict(raw);
    if (value === undefined) {
      throw invalid(`Root device hint "${hint}" is not a Boolean value. Current value: ${JSON.stringify(raw)}`, { hint });
    }
    return { name: hint, kind: 'bool', value };
  }
  if (typeof raw !== 'string' && typeof raw !== 'number') {
    throw invalid(`Root device hint "${hint}" has an unsupported value: ${JSON.stringify(raw)}`, { hint });
  }
  const expression = String(raw).trim().toLowerCase();
  if (expression === '') throw invalid(`Root device hint ${hint} expression is empty`, { hint });
  return VALID_ROOT_DEVICE_HINTS[hint] === 'int' ? parseSize(hint, raw, expression) : parseString(hint, raw, expression);
}

/** Parse a hints dict; `null`/`undefined`/`{}` mean "no hints" and give an empty list. */
export function parseRootDeviceHints(hints: unknown): ParsedHint[] {
  if (hints === null || hints === undefined) return [];
  if (typeof hints !== 'object' || Array.isArray(hints)) {
    throw invalid(`Root device hints must be a dictionary, got ${JSON.stringify(hints)}`);
  }
  const entries = Object.entries(hints as Record<string, unknown>);
  const unknown = entries.map(([k]) => k).filter((k) => !Object.hasOwn(VALID_ROOT_DEVICE_HINTS, k));
  if (unknown.length > 0) {
    throw invalid(`The hints "${unknown.join(', ')}" are invalid. Valid hints are: "${Object.keys(VALID_ROOT_DEVICE_HINTS).join(', ')}"`, { invalid_hints: unknown });
  }
  return entries.map(([name, raw]) => parseHint(name, raw));
}
