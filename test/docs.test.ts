import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { OPTIONS } from '../src/config/index.ts';
import { ERROR_CODES } from '../src/errors.ts';
import { renderReadmeTables } from './helpers/readme-tables.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('has the configuration and error tables the code defines (run `npm run docs` to update)', () => {
    assert.equal(readme, renderReadmeTables(readme));
  });
  it('names every error code and every option', () => {
    for (const code of Object.keys(ERROR_CODES)) assert.ok(readme.includes(`\`${code}\``), code);
    for (const def of OPTIONS) assert.ok(readme.includes(`\`${def.key}\``), def.key);
  });
  it('gives the test command that .ci/run calls', () => {
    const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
    assert.match(readme, /npm test/);
    assert.match(ci, /^npm test$/m);
  });
});
