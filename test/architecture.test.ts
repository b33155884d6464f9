// The layering the README's architecture map states, checked against the imports of src/:
// every import points to a lower layer (or stays inside its folder), and no files import
// each other in a circle. Dynamic imports count like static ones.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LAYERS } from './helpers/layers.ts';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));


function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const unitOf = (file: string) => relative(SRC, file).split('/')[0]!;

function importsOf(file: string): string[] {
  // Comments hold examples of imports; they are not imports.
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const found = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return found.map((spec) => normalize(join(dirname(file), spec)));
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));

describe('architecture', () => {
  it('gives every part of src/ a layer', () => {
    for (const file of files) assert.ok(unitOf(file) in LAYERS, `${relative(SRC, file)}: its folder has no layer in LAYERS`);
  });

  it('imports only downwards', () => {
    const against: string[] = [];
    for (const [file, targets] of graph) {
      const from = unitOf(file);
      for (const target of targets) {
        const to = unitOf(target);
        if (to !== from && !(LAYERS[to]! < LAYERS[from]!)) against.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
      }
    }
    assert.deepEqual(against, []);
  });

  it('has no import circle', () => {
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        circles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(SRC, f)).join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const target of graph.get(file) ?? []) visit(target, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of files) visit(file, []);
    assert.deepEqual(circles, []);
  });
});
