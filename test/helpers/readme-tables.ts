// Renders the generated README tables (configuration options, error codes) between their
// marker comments. Shared by scripts/gen-docs.ts and test/docs.test.ts.
import { envName, OPTIONS, type OptionDef } from '../../src/config/index.ts';
import { ERROR_CODES } from '../../src/errors.ts';

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

function replaceBetween(text: string, name: string, content: string): string {
  const start = `<!-- generated:${name}:start -->`;
  const end = `<!-- generated:${name}:end -->`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`README.md lacks the ${start} … ${end} markers`);
  return `${text.slice(0, i + start.length)}\n${content}\n${text.slice(j)}`;
}

export function renderReadmeTables(readme: string): string {
  return replaceBetween(replaceBetween(readme, 'config', configTable()), 'errors', errorTable());
}
