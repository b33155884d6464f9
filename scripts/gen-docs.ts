// Regenerates the README's configuration and error-code tables from the code
// (`npm run docs`); test/docs.test.ts fails when the README is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderReadmeTables } from '../test/helpers/readme-tables.ts';

const path = new URL('../README.md', import.meta.url);
const before = readFileSync(path, 'utf8');
const after = renderReadmeTables(before);
if (after !== before) {
  writeFileSync(path, after);
  console.log('README.md tables updated');
} else {
  console.log('README.md tables already up to date');
}
