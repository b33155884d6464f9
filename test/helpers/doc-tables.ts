// Renders the generated documentation tables (configuration options, error codes) between their
// marker comments in docs/. Shared by scripts/gen-docs.ts and test/docs.test.ts.
import { envName, OPTIONS, type OptionDef } from '../../src/config/index.ts';
import { ERROR_CODES } from '../../src/errors.ts';

/** A table generated from the code, and the page (relative to the repository root) that holds it. */
export interface GeneratedTable {
  /** The marker name: the table sits between `<!-- generated:NAME:start -->` and `…:end -->`. */
  name: string;
  path: string;
  render: () => string;
}

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function configTable(): string {
  const rows = ['| key (config file) | kernel command line | environment | default | meaning |', '|---|---|---|---|---|'];
  for (const def of OPTIONS as readonly OptionDef[]) {
    const dflt = def.default === undefined ? '—' : `\`${Array.isArray(def.default) ? def.default.join(',') : String(def.default)}\``;
    const kind = def.kind === 'enum' ? `one of ${def.choices!.map((c) => `\`${c}\``).join(', ')}` : def.kind;
    rows.push(`| \`${def.key}\` | ${def.cmdline ? `\`${def.cmdline}\`` : '—'} | \`${envName(def)}\` | ${dflt} | ${cell(def.help)} (${kind}) |`);
  }
  return rows.join('\n');
}

export function errorTable(): string {
  const rows = ['| code | HTTP status | `command_error.type` | meaning |', '|---|---|---|---|'];
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    rows.push(`| \`${code}\` | ${info.status} | \`${info.type}\` | ${cell(info.meaning)} |`);
  }
  return rows.join('\n');
}

export const GENERATED_TABLES: readonly GeneratedTable[] = [
  { name: 'config', path: 'docs/configuration.md', render: configTable },
  { name: 'errors', path: 'docs/errors.md', render: errorTable },
];

/** `text` (the page of `table`) with the table between its markers regenerated. */
export function renderTable(text: string, table: GeneratedTable): string {
  const start = `<!-- generated:${table.name}:start -->`;
  const end = `<!-- generated:${table.name}:end -->`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`${table.path} lacks the ${start} … ${end} markers`);
  return `${text.slice(0, i + start.length)}\n${table.render()}\n${text.slice(j)}`;
}
