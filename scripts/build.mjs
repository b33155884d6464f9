// Bundles the agent into one ESM file that a ramdisk runs with plain `node`:
// dist/bootc-agent.mjs (no node_modules needed at run time).
//
// Start-up cost is mostly V8 parsing and running the bundle's module code, so:
//  - the source map is a separate file, dist/bootc-agent.mjs.map (an inline map made the file
//    11 MB: ~24 MB more RSS and ~0.1 s CPU per start). Node reads it only when asked:
//    `node --enable-source-maps dist/bootc-agent.mjs …` (or NODE_OPTIONS=--enable-source-maps)
//    with the .map beside the .mjs gives stack traces in src/*.ts lines;
//  - whitespace and syntax are minified, identifiers are NOT: function and class names stay
//    as written, so stack traces, pino's `err.type` and `constructor.name` are readable
//    without the map (locations are then line 1-ish, column N of the bundle);
//  - `import … from 'undici'` gets scripts/undici-slim.cjs (the dispatcher API only), not
//    undici's index.js with fetch/WebSocket/cache/cookies/mocks;
//  - zod's locales are English only (`z.locales.en`; the others are not in the bundle).
import { build } from 'esbuild';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createRequire } from 'node:module';

const root = new URL('..', import.meta.url).pathname;
// `node scripts/build.mjs [--outfile FILE] [--metafile FILE]`: dist/bootc-agent.mjs unless told
// otherwise (tests build into a temporary directory); --metafile writes esbuild's account of
// which input went into the output and how many bytes of it (the benchmarks print it).
const argValue = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? resolve(process.argv[i + 1]) : undefined;
};
const outfile = argValue('--outfile') ?? join(root, 'dist/bootc-agent.mjs');
const metafile = argValue('--metafile');
const undiciSlim = join(root, 'scripts/undici-slim.cjs');

// Every name src/ imports (not type-only) from 'undici' must be exported by the slim entry:
// esbuild cannot check a CommonJS module's exports, a missing one would be `undefined` at run time.
function checkUndiciImports() {
  const exported = new Set(Object.keys(createRequire(import.meta.url)(undiciSlim)));
  const missing = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        for (const m of readFileSync(path, 'utf8').matchAll(/import\s*\{([^}]*)\}\s*from\s*'undici'/g)) {
          for (const raw of m[1].split(',')) {
            const name = raw.trim().split(/\s+as\s+/)[0].trim();
            if (name && !name.startsWith('type ') && !exported.has(name)) missing.push(`${path.slice(root.length)}: ${name}`);
          }
        }
      }
    }
  };
  walk(join(root, 'src'));
  if (missing.length) throw new Error(`scripts/undici-slim.cjs does not export what src/ imports from 'undici':\n  ${missing.join('\n  ')}`);
}

checkUndiciImports();
const started = performance.now();
const result = await build({
  entryPoints: [join(root, 'src/main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minifyWhitespace: true,
  minifySyntax: true,
  // Renaming identifiers saves 0.4 MB more but needs keepNames for readable names, and with
  // it the agent measured ~12 MB more idle RSS and more CPU: not worth it.
  minifyIdentifiers: false,
  sourcemap: 'linked',
  legalComments: 'linked',
  // Some dependencies are CommonJS and call require(): give the ESM bundle one.
  banner: { js: "import { createRequire as __bootcAgentCreateRequire } from 'node:module'; const require = __bootcAgentCreateRequire(import.meta.url);" },
  plugins: [{
    // Node's ESM facade of a built-in module reads every export when the module is imported,
    // lazy getters included: `import … from 'node:tls'` parses the whole root CA store into
    // JS strings and `import … from 'node:process'` builds process.allowedNodeEnvironmentFlags
    // and loads process.report, ~2 MiB of idle RSS between them, even for imports of modules
    // the agent only loads on first use (the bundle hoists every import to its top). Static
    // imports of built-ins therefore go through CommonJS `require`, which reads a property
    // only when the code uses it.
    name: 'builtins-through-require',
    setup(b) {
      b.onResolve({ filter: /^node:[a-z0-9_/]+$/ }, (args) => (
        args.kind === 'import-statement' ? { path: args.path, namespace: 'builtin-require' } : undefined
      ));
      b.onLoad({ filter: /.*/, namespace: 'builtin-require' }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: 'js',
      }));
    },
  }, {
    name: 'undici-slim',
    setup(b) {
      b.onResolve({ filter: /^undici$/ }, () => ({ path: undiciSlim }));
    },
  }, {
    // zod's `z.locales` namespace pulls in ~50 translations of its error messages (290 KiB);
    // the agent only ever uses English, which zod registers by default.
    name: 'zod-english-only',
    setup(b) {
      b.onResolve({ filter: /\/locales\/index\.js$/ }, (args) => (
        /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer) ? { path: join(args.resolveDir, '../locales/en.js'), namespace: 'zod-locales' } : undefined
      ));
      b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
        contents: `export { default as en } from ${JSON.stringify(args.path)};`,
        resolveDir: root,
      }));
    },
  }],
  logLevel: 'warning',
  metafile: Boolean(metafile),
});
if (metafile) writeFileSync(metafile, JSON.stringify(result.metafile));
const size = statSync(outfile).size;
console.log(`built ${outfile} (${(size / 1024 / 1024).toFixed(1)} MiB, source map in ${outfile}.map) in ${Math.round(performance.now() - started)} ms`);
