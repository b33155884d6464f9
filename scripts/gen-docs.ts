// Regenerates the configuration and error-code tables in docs/ from the code (`npm run docs`);
// test/docs.test.ts fails when a page is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { GENERATED_TABLES, renderTable } from '../test/helpers/doc-tables.ts';

for (const table of GENERATED_TABLES) {
  const path = new URL(`../${table.path}`, import.meta.url);
  const before = readFileSync(path, 'utf8');
  const after = renderTable(before, table);
  if (after !== before) {
    writeFileSync(path, after);
    console.log(`${table.path}: ${table.name} table updated`);
  } else {
    console.log(`${table.path}: ${table.name} table already up to date`);
  }
}
