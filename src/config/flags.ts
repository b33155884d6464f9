/**
 * The agent's command-line flags: every option as `--kebab-case`, plus `--config`,
 * `--cmdline-file`, `--help` and `--version`. A `bool` option given alone (`--debug`) means
 * true; `--debug=false` and `--debug false` still say false.
 * @module
 */
import { parseArgs } from 'node:util';
import { flagName, OPTIONS, type OptionDef, type OptionKey } from './options.ts';

const BOOL_FLAGS: ReadonlySet<string> = new Set(
  (OPTIONS as readonly OptionDef[]).filter((def) => def.kind === 'bool').map((def) => `--${flagName(def)}`),
);

// parseArgs' own rule for a word that cannot be a flag's value: it looks like an option.
const looksLikeOption = (arg: string | undefined): boolean => arg !== undefined && arg.length > 1 && arg.startsWith('-');

/**
 * Spells out `=true` after a bool flag that has no value (nothing follows it, or another flag
 * does). A following plain word stays its value, as it was before bare flags were allowed.
 */
export function withBareBooleans(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return [...out, ...argv.slice(i)];
    const bare = BOOL_FLAGS.has(arg) && (i + 1 === argv.length || looksLikeOption(argv[i + 1]));
    out.push(bare ? `${arg}=true` : arg);
  }
  return out;
}

/** Parses the agent's argv (without node and the script); throws parseArgs' errors on bad usage. */
export function parseFlags(argv: readonly string[]) {
  const options: Record<string, { type: 'string' | 'boolean' }> = {
    config: { type: 'string' },
    'cmdline-file': { type: 'string' },
    help: { type: 'boolean' },
    version: { type: 'boolean' },
  };
  // Option values stay strings here: loadConfig parses them like the other sources' values.
  for (const def of OPTIONS) options[flagName(def)] = { type: 'string' };
  const { values } = parseArgs({ args: withBareBooleans(argv), options, strict: true, allowPositionals: false });
  const overrides: Partial<Record<OptionKey, unknown>> = {};
  for (const def of OPTIONS) {
    const value = values[flagName(def)];
    if (value !== undefined) overrides[def.key] = value;
  }
  return { values, overrides };
}
