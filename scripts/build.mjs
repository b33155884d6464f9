// Bundles the agent into one ESM file that a ramdisk runs with plain `node`:
// dist/bootc-agent.mjs (no node_modules needed at run time).
import { build } from 'esbuild';
import { statSync } from 'node:fs';

const outfile = new URL('../dist/bootc-agent.mjs', import.meta.url).pathname;
const started = performance.now();
await build({
  entryPoints: [new URL('../src/main.ts', import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: false,
  sourcemap: 'inline',
  legalComments: 'linked',
  // Some dependencies are CommonJS and call require(): give the ESM bundle one.
  banner: { js: "import { createRequire as __bootcAgentCreateRequire } from 'node:module'; const require = __bootcAgentCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
const size = statSync(outfile).size;
console.log(`built ${outfile} (${(size / 1024 / 1024).toFixed(1)} MiB) in ${Math.round(performance.now() - started)} ms`);
