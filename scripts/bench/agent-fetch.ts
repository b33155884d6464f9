/**
 * Runs the agent's write path as its own process — `bootc-agent fetch oci://… --output DEV
 * --json` (src/cli/fetch.ts → src/image writeArtifactToTarget) — under `/usr/bin/time` for its
 * peak RSS, and returns its own result (bytes, digest, seconds, phases) with the wall time.
 * @module
 */
import { symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ramdiskNode } from './bundle.ts';
import { measure, median, ROOT, run, which, type Measured } from './common.ts';
import type { BenchRegistry } from './registry.ts';

export interface FetchRun {
  /** Spawn → exit, seconds. */
  wall: number;
  /** writeArtifactToTarget's own wall time. */
  seconds: number;
  phases: Record<string, number>;
  bytes: number;
  downloadedBytes: number;
  compression: string;
  /** Peak RSS (VmHWM) of the agent process, KiB. */
  maxRssKiB?: number | undefined;
  /** CPU seconds of the agent process and its children (zstd, partx, …). */
  cpu?: number | undefined;
  partitionsReread: string[];
}

/** One `fetch` run, after a `sync` (as ddToDevice does before each dd). */
export async function runAgentFetch(prefix: string[], source: string, device: string, auth: { authFile: string; certsDir: string }, tmp: string): Promise<FetchRun> {
  await run('sync', []);
  const argv = [...prefix, source, '--output', device, '--authfile', auth.authFile, '--cert-dir', auth.certsDir, '--json', '--progress-interval', '3600'];
  const m = await measure(argv, tmp, { cwd: ROOT });
  const result = JSON.parse(m.stdout.trim().split('\n').pop()!) as {
    seconds: number; phases: Record<string, number>; bytes: number; downloadedBytes: number; compression: string; partitionsReread: string[];
  };
  return { ...result, wall: m.wall, cpu: m.cpu, maxRssKiB: m.maxRssKiB };
}

/** Median peak RSS (KiB) of the runs, undefined when GNU time gave none. */
export function peakRssKiB(runs: FetchRun[]): number | undefined {
  const rss = median(runs.map((r) => r.maxRssKiB ?? NaN));
  return Number.isNaN(rss) ? undefined : rss;
}

/** Peak RSS (KiB) of `prefix --help`: what loading the agent's code costs before any data flows. */
export async function helpPeakRss(prefix: string[]): Promise<number | undefined> {
  const timeBin = which('time');
  if (!timeBin) return undefined;
  const r = await run(timeBin, ['-f', '%M', ...prefix, '--help'], { cwd: ROOT, allowFail: true });
  const kib = Number(r.stderr.trim().split('\n').pop());
  return Number.isFinite(kib) ? kib : undefined;
}

/**
 * `BENCH_BEFORE=REV`: the agent's `fetch` as of git revision REV (its src/ and build script,
 * built into `tmp` with this checkout's node_modules), so a section prints the agent before and
 * after a change side by side in one run. Undefined when the variable is not set.
 */
export async function beforeFetchPrefix(tmp: string): Promise<{ argv: string[]; rev: string } | undefined> {
  const rev = process.env.BENCH_BEFORE;
  if (!rev) return undefined;
  const dir = join(tmp, 'before');
  const archive = join(tmp, 'before.tar');
  await run('git', ['-C', ROOT, 'archive', '--format=tar', '-o', archive, rev, '--', 'src', 'scripts/build.mjs', 'scripts/undici-slim.cjs', 'package.json']);
  await run('mkdir', ['-p', dir]);
  await run('tar', ['-xf', archive, '-C', dir]);
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  await run(process.execPath, [join(dir, 'scripts/build.mjs'), '--outfile', join(dir, 'dist/bootc-agent.mjs')], { cwd: dir });
  return { argv: [...ramdiskNode(), join(dir, 'dist/bootc-agent.mjs'), 'fetch'], rev };
}

/**
 * `curl` of one blob straight from the registry (TLS, no verification) piped into `tail`, a
 * shell pipeline tail given the device as "$4" (curl's credentials go in a config file, not argv).
 */
export async function curlBlobInto(br: BenchRegistry, repo: string, digest: string, tail: string, device: string, tmp: string): Promise<Measured> {
  const config = join(tmp, 'curl.cfg');
  await writeFile(config, `user = "${br.reg.username}:${br.reg.password}"\n`, { mode: 0o600 });
  await run('sync', []);
  const script = `set -o pipefail; curl -sS --fail -K "$1" --cacert "$2" "$3" | ${tail}`;
  return measure(['bash', '-c', script, 'bench', config, br.reg.cert.certPath, `${br.reg.url}/v2/${repo}/blobs/${digest}`, device], tmp);
}

/** Pipeline tails for `curlBlobInto`: what the agent competes with. */
export const CURL_TAILS = {
  ddDirect: 'dd of="$4" bs=1M iflag=fullblock oflag=direct conv=fsync status=none',
  zstdDd: 'zstd -q -dc | dd of="$4" bs=1M conv=fsync status=none',
  discard: 'cat > /dev/null',
} as const;
