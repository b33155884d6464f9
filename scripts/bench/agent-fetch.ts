/**
 * Runs the agent's write path as its own process — `bootc-agent fetch oci://… --output DEV
 * --json` (src/cli/fetch.ts → src/image writeArtifactToTarget) — under `/usr/bin/time` for its
 * peak RSS, and returns its own result (bytes, digest, seconds, phases) with the wall time.
 * @module
 */
import { measure, median, ROOT, run, which } from './common.ts';

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
