/**
 * The hashing thread (src/oci/stream-hash.ts) from a one-file ESM bundle built like
 * dist/bootc-agent.mjs (esbuild, node20, minified syntax, a `require` banner): the worker's code
 * is evaluated from a string, so it needs no file beside the bundle. A child node process runs
 * the bundle from a directory with nothing else in it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { build } from 'esbuild';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;

test('a bundled worker hash gives node:crypto\'s sha256 and sha512 of a file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'stream-hash-bundle-'));
  try {
    const entry = join(dir, 'entry.ts');
    await writeFile(entry, `
import { readFileSync } from 'node:fs';
import { createStreamHash, runningHashThreads } from ${JSON.stringify(join(ROOT, 'src/oci/stream-hash.ts'))};
const bytes = readFileSync(process.argv[2]);
const out = {};
for (const algorithm of ['sha256', 'sha512']) {
  const hash = createStreamHash(algorithm, true);
  for (let o = 0; o < bytes.length; o += 100_000) await hash.update(bytes.subarray(o, o + 100_000));
  out[algorithm] = await hash.digest();
}
out.threads = runningHashThreads();
console.log(JSON.stringify(out));
`);
    const outfile = join(dir, 'out', 'bundle.mjs');
    await build({
      entryPoints: [entry], outfile, bundle: true, platform: 'node', target: 'node20', format: 'esm', minifyWhitespace: true, minifySyntax: true,
      banner: { js: "import { createRequire as __r } from 'node:module'; const require = __r(import.meta.url);" }, logLevel: 'silent',
    });
    const data = join(dir, 'data.bin');
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(data, bytes);
    const { stdout } = await run(process.execPath, ['--max-semi-space-size=1', outfile, data], { cwd: join(dir, 'out') });
    const got = JSON.parse(stdout) as Record<string, unknown>;
    assert.equal(got['sha256'], createHash('sha256').update(bytes).digest('hex'));
    assert.equal(got['sha512'], createHash('sha512').update(bytes).digest('hex'));
    assert.equal(got['threads'], 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
