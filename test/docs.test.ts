import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OPTIONS } from '../src/config/index.ts';
import { ERROR_CODES } from '../src/errors.ts';
import { GENERATED_TABLES, renderTable } from './helpers/doc-tables.ts';
import { LAYERS } from './helpers/layers.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const readme = read('README.md');
const docPages = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`).sort();
const README_MAX_LINES = 300;

// Markdown outside fenced code blocks and inline code spans, where links are links.
function prose(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '');
}

// GitHub's heading anchors: lower case, punctuation other than `-` and `_` dropped, spaces to
// hyphens, and `-1`, `-2`, … for repeated headings.
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '').matchAll(/^#{1,6} +(.+?) *#*$/gm)) {
    const text = m[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const base = text.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '').replaceAll(' ', '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

// Every `[text](target)` of a page whose target is not a URL with a scheme.
function relativeLinks(markdown: string): string[] {
  const targets = [...prose(markdown).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
  return targets.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t));
}

// What is wrong with `target`, linked from the page `from`; undefined when it resolves.
function brokenLink(from: string, target: string): string | undefined {
  const [pathPart, anchor] = target.split('#', 2) as [string, string | undefined];
  const file = pathPart === '' ? join(root, from) : resolve(dirname(join(root, from)), decodeURIComponent(pathPart));
  if (!existsSync(file)) return `${from}: ${target} does not exist`;
  if (anchor === undefined) return undefined;
  if (!file.endsWith('.md')) return `${from}: ${target} has an anchor but is not a Markdown page`;
  return anchors(readFileSync(file, 'utf8')).has(decodeURIComponent(anchor)) ? undefined : `${from}: ${target}: no such heading`;
}

// Whether a repository path named in the docs exists; a `*` in its last part must match an entry.
function pathExists(path: string): boolean {
  if (!path.includes('*')) return existsSync(join(root, path));
  const dir = join(root, dirname(path));
  const escaped = path.split('/').pop()!.split('*').map((part) => part.replace(/[.+?^$()|[\]\\{}]/g, '\\$&'));
  const pattern = new RegExp(`^${escaped.join('.*')}$`);
  return existsSync(dir) && readdirSync(dir).some((name) => pattern.test(name));
}

interface MapRow {
  layer: number | undefined;
  paths: string[];
  imports: string[] | undefined;
}

// The README's architecture table: its layer column (blank outside src/), the paths of its second
// column, and its last column's list of what the row imports (undefined for "—").
function architectureMap(): MapRow[] {
  const m = /<!-- architecture:start -->\n([\s\S]*?)<!-- architecture:end -->/.exec(readme);
  assert.ok(m, 'README.md lacks the <!-- architecture:start --> … <!-- architecture:end --> markers');
  const lines = m[1]!.split('\n').filter((l) => l.startsWith('|')).slice(2);
  return lines.map((line) => {
    const cells = line.slice(1, -1).split(' | ').map((c) => c.trim());
    const codes = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((c) => c[1]!);
    const last = cells[cells.length - 1]!;
    return { layer: cells[0] ? Number(cells[0]) : undefined, paths: codes(cells[1]!), imports: last === '—' ? undefined : codes(last) };
  });
}

function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((name) => filesUnder(join(path, name)));
}

// The relative specifiers a module imports: static imports and re-exports at the start of a
// line, side-effect imports, and dynamic `import('…')` outside comment lines.
function specifiers(source: string): string[] {
  const statics = [...source.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*'(\.[^']*)'|^import\s*'(\.[^']*)'/gm)].map((m) => (m[1] ?? m[2])!);
  const dynamic = source.split('\n').filter((l) => !/^\s*(\*|\/\/)/.test(l)).flatMap((l) => [...l.matchAll(/\bimport\(\s*'(\.[^']*)'\s*\)/g)].map((m) => m[1]!));
  return [...statics, ...dynamic];
}

// The entries of src/ (`config/`, `agent.ts`) that the files of `entry` (a path like `src/oci/`)
// import, without itself and without `errors.ts`, which every module may use.
function importedEntries(entry: string): string[] {
  const src = join(root, 'src');
  const self = entry.replace(/^src\//, '');
  const found = new Set<string>();
  for (const file of filesUnder(join(root, entry)).filter((f) => /\.tsx?$/.test(f))) {
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      const target = relative(src, resolve(dirname(file), spec));
      if (target.startsWith('..')) continue;
      const [first, ...rest] = target.split(sep);
      const name = rest.length > 0 ? `${first}/` : first!;
      if (name !== self && name !== 'errors.ts') found.add(name);
    }
  }
  return [...found].sort();
}

describe('documentation', () => {
  for (const table of GENERATED_TABLES) {
    it(`${table.path} has the ${table.name} table the code defines (run \`npm run docs\` to update)`, () => {
      const page = read(table.path);
      assert.equal(page, renderTable(page, table));
    });
  }

  it('names every error code and every option', () => {
    const errors = read('docs/errors.md');
    const config = read('docs/configuration.md');
    for (const code of Object.keys(ERROR_CODES)) assert.ok(errors.includes(`\`${code}\``), code);
    for (const def of OPTIONS) assert.ok(config.includes(`\`${def.key}\``), def.key);
  });

  it(`keeps the README within ${README_MAX_LINES} lines`, () => {
    const lines = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0);
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines`);
  });

  it('gives the test command that .ci/run calls', () => {
    const ci = read('.ci/run');
    assert.match(readme, /npm test/);
    assert.match(ci, /^npm test$/m);
  });

  it('links every page of docs/ from the README', () => {
    const linked = new Set(relativeLinks(readme).map((t) => t.split('#')[0]));
    for (const page of docPages) assert.ok(linked.has(page), `README.md does not link ${page}`);
  });

  it('has no broken relative link or anchor in README.md and docs/*.md', () => {
    const broken = ['README.md', ...docPages].flatMap((page) => relativeLinks(read(page)).map((t) => brokenLink(page, t)));
    assert.deepEqual(broken.filter((b) => b !== undefined), []);
  });

  it('names only paths of src/, test/ and scripts/ that exist, in README.md and docs/*.md', () => {
    const named = ['README.md', ...docPages].flatMap((page) =>
      [...read(page).matchAll(/`((?:src|test|scripts)\/[\w.*/-]*)`/g)].map((m) => ({ page, path: m[1]! })));
    assert.deepEqual(named.filter((n) => !pathExists(n.path)).map((n) => `${n.page}: ${n.path}`), []);
  });

  it('maps paths that exist in the README architecture table, every entry of src/ among them', () => {
    const paths = architectureMap().flatMap((row) => row.paths);
    const entries = readdirSync(join(root, 'src'), { withFileTypes: true }).map((e) => `src/${e.name}${e.isDirectory() ? '/' : ''}`);
    const wrong = [
      ...paths.filter((path) => !pathExists(path)).map((path) => `${path} does not exist`),
      ...entries.filter((entry) => !paths.includes(entry)).map((entry) => `no row for ${entry}`),
    ];
    assert.deepEqual(wrong, [], 'README.md architecture map');
  });

  it('gives each entry of src/ in the architecture table the layer test/architecture.test.ts checks', () => {
    const wrong = architectureMap()
      .flatMap((row) => row.paths.filter((path) => path.startsWith('src/')).map((path) => ({ path, layer: row.layer })))
      .map(({ path, layer }) => ({ path, layer, want: LAYERS[path.slice('src/'.length).replace(/\/$/, '')] }))
      .filter((r) => r.layer !== r.want)
      .map((r) => `${r.path}: the map says layer ${String(r.layer)}, LAYERS says ${String(r.want)}`);
    assert.deepEqual(wrong, [], 'README.md architecture map');
  });

  it('lists in the architecture table what each entry of src/ imports', () => {
    const wrong = architectureMap()
      .filter((row) => row.paths.length === 1 && row.paths[0]!.startsWith('src/') && existsSync(join(root, row.paths[0]!)))
      .map((row) => ({ entry: row.paths[0]!, listed: [...(row.imports ?? [])].sort(), imports: importedEntries(row.paths[0]!) }))
      .filter((r) => r.listed.join() !== r.imports.join())
      .map((r) => `${r.entry} imports ${r.imports.join(', ') || '—'}; the map says ${r.listed.join(', ') || '—'}`);
    assert.deepEqual(wrong, [], 'README.md architecture map');
  });
});
