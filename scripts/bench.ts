/**
 * `npm run bench [-- --only=startup,oci --size=2G --runs=5]`: side-by-side figures for the
 * agent against the plain tools it competes with (node, skopeo, dd, zstd, podman). It prints
 * figures and targets; it never fails on a timing. A section whose prerequisites are missing
 * prints `skipped: <reason>` and the run goes on. Sections live in scripts/bench/.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchTmpParent, parseSize, runAllCleanups, Skip, type BenchContext, type BenchOptions, type Section } from './bench/common.ts';
import { loadAverage, machineFacts } from './bench/machine.ts';
import { startupSection } from './bench/startup.ts';
import { ociPullSection } from './bench/oci-pull.ts';
import { rawLoopSection } from './bench/raw-loop.ts';
import { zstdSection } from './bench/zstd.ts';
import { deploySection } from './bench/deploy.ts';
import { abuseSection } from './bench/abuse.ts';
import { signaturesSection } from './bench/signatures.ts';
import { storageSection } from './bench/storage.ts';
import { fleetSection } from './bench/fleet.ts';

const SECTIONS: Section[] = [startupSection, ociPullSection, rawLoopSection, zstdSection, deploySection, abuseSection, signaturesSection, storageSection, fleetSection];

const HELP = `Usage: npm run bench [-- OPTIONS]

  --only=LIST        sections to run, comma-separated (default: all):
${SECTIONS.map((s) => `                       ${s.name.padEnd(8)} ${s.title}`).join('\n')}
  --size=SIZE        raw artifact written to the loop device (default 1G; the issue's target is 2G)
  --image-size=SIZE  total size of the multi-layer image for "oci" (default 1G)
  --layers=N         layers of that image (default 4)
  --zstd-size=SIZE   uncompressed size of the zstd artifact (default 1G)
  --deploy-filler=SIZE  deploy: a second image, the stand-in plus SIZE of OS-like files,
                     closer to a real bootc base image (default 384M; 0: only the stand-in)
  --deploy-storage=tmpfs|disk  deploy: where podman's containers storage lives (default tmpfs,
                     as in the ramdisk; disk: this machine's root filesystem)
  --runs=N           repetitions per measurement, median shown (default 3)
  --startup-runs=N   repetitions of each startup measurement (default 5)
  --no-tsx           startup: skip the "node --import tsx src/main.ts" rows
  --build            rebuild dist/ first even if it looks fresh (it is rebuilt anyway when older than src/)
  --verbose          print progress lines
  BENCH_TMPDIR=DIR   where temp files go (default: the OS temp dir)
`;

function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      only: { type: 'string' }, size: { type: 'string' }, 'image-size': { type: 'string' }, layers: { type: 'string' },
      'zstd-size': { type: 'string' }, 'deploy-filler': { type: 'string' }, 'deploy-storage': { type: 'string' }, runs: { type: 'string' }, 'startup-runs': { type: 'string' },
      'no-tsx': { type: 'boolean' }, build: { type: 'boolean' }, verbose: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return undefined;
  const names = SECTIONS.map((s) => s.name);
  const only = values.only ? values.only.split(',').map((s) => s.trim()).filter(Boolean) : names;
  const unknown = only.filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown section(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const int = (v: string | undefined, d: number) => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive integer, got "${v}"`);
    return n;
  };
  const deployStorage = values['deploy-storage'] ?? 'tmpfs';
  if (deployStorage !== 'tmpfs' && deployStorage !== 'disk') throw new Error(`--deploy-storage: expected tmpfs or disk, got "${deployStorage}"`);
  return {
    only,
    size: parseSize(values.size ?? '1G'),
    imageSize: parseSize(values['image-size'] ?? '1G'),
    layers: int(values.layers, 4),
    zstdSize: parseSize(values['zstd-size'] ?? '1G'),
    deployFiller: values['deploy-filler'] === '0' ? 0 : parseSize(values['deploy-filler'] ?? '384M'),
    deployStorage,
    runs: int(values.runs, 3),
    startupRuns: int(values['startup-runs'], 5),
    build: values.build ?? false,
    tsx: !(values['no-tsx'] ?? false),
    verbose: values.verbose ?? false,
  };
}

async function main(): Promise<number> {
  let options: BenchOptions | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (!options) {
    process.stdout.write(HELP);
    return 0;
  }
  const tmp = await mkdtemp(join(benchTmpParent(), 'bootc-agent-bench-'));
  const ctx: BenchContext = {
    options, tmp,
    log: (m) => { if (options.verbose) process.stderr.write(`  … ${m}\n`); },
  };
  const started = performance.now();
  // Ctrl-C: detach our loop devices, stop our registry and remove our files before leaving.
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`\nbench: ${signal}; cleaning up\n`);
    void runAllCleanups().finally(() => rm(tmp, { recursive: true, force: true })).finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    console.log('bootc-agent benchmarks');
    console.log(await machineFacts(tmp));
    for (const section of SECTIONS.filter((s) => options.only.includes(s.name))) {
      console.log(`\n== ${section.name}: ${section.title} ==\n  load average at start ${loadAverage()}`);
      const t0 = performance.now();
      try {
        await section.run(ctx);
        console.log(`  (section took ${((performance.now() - t0) / 1000).toFixed(1)} s; load average now ${loadAverage()})`);
      } catch (err) {
        if (err instanceof Skip) console.log(`  skipped: ${err.message}`);
        else console.log(`  failed: ${(err as Error).stack ?? String(err)}`);
      }
    }
    console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await runAllCleanups();
    await rm(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
