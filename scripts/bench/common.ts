/**
 * Shared pieces of the benchmark sections: options, timing, tables, processes, /proc readings.
 * Benchmarks print figures; they never assert timings.
 * @module
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

export interface BenchOptions {
  /** Sections to run, in order. */
  only: string[];
  /** Raw artifact size for the loop-device section. */
  size: number;
  /** Total image size for the blob-pull section (split over `layers`). */
  imageSize: number;
  layers: number;
  /** Uncompressed size of the zstd artifact. */
  zstdSize: number;
  /** Size of the OS-like layer added to the stand-in for the deploy section's second image (0: none). */
  deployFiller: number;
  /** Where the deploy section's containers storage lives: a tmpfs, as in the ramdisk, or the root filesystem. */
  deployStorage: 'tmpfs' | 'disk';
  /** Repetitions per measurement (median reported). */
  runs: number;
  /** Runs of the startup section (it is cheap, so more). */
  startupRuns: number;
  /** Rebuild dist/ even when it looks fresh. */
  build: boolean;
  /** Include `node --import tsx src/main.ts` in the startup section. */
  tsx: boolean;
  verbose: boolean;
}

/** Bench-wide context: options plus a temp root every section puts its files under. */
export interface BenchContext {
  options: BenchOptions;
  tmp: string;
  log(message: string): void;
}

export interface Section {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<void>;
}

/** A section that cannot run here: printed as `skipped: <reason>`, the run continues. */
export class Skip extends Error {}

// ---------- sizes, durations, ratios ----------

export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}" (e.g. 512M, 2G)`);
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase()]!;
  return Math.round(Number(m[1]) * unit);
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(n % 2 ** 30 === 0 ? 0 : 2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(n % 2 ** 20 === 0 ? 0 : 1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(0)} KiB`;
  return `${n} B`;
}

export function fmtMiB(kib: number | undefined): string {
  return kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`;
}

export function fmtSeconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return 'n/a';
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  return `${s.toFixed(2)} s`;
}

export function fmtRate(bytes: number, seconds: number | undefined): string {
  if (seconds === undefined || !(seconds > 0)) return 'n/a';
  const mbs = bytes / seconds / 1e6;
  return mbs >= 1000 ? `${(mbs / 1000).toFixed(2)} GB/s` : `${mbs.toFixed(0)} MB/s`;
}

/** "1.23×" where > 1 means `ours` is faster (baseline time / our time). */
export function fmtSpeedup(baselineSeconds: number | undefined, oursSeconds: number | undefined): string {
  if (!baselineSeconds || !oursSeconds) return 'n/a';
  return `${(baselineSeconds / oursSeconds).toFixed(2)}×`;
}

export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** CPU seconds as "1.23 s cpu", or '' when unknown. */
export function fmtCpu(values: (number | undefined)[]): string {
  const v = values.filter((x): x is number => x !== undefined);
  return v.length === values.length && v.length > 0 ? fmtSeconds(median(v)) : 'n/a';
}

export function spread(values: number[]): string {
  if (values.length < 2) return '';
  return `${fmtSeconds(Math.min(...values))}–${fmtSeconds(Math.max(...values))}`;
}

/** `target ≥ 1.0×: met` / `not met`. */
export function verdict(met: boolean | undefined): string {
  return met === undefined ? 'n/a' : met ? 'met' : 'NOT met';
}

// ---------- tables ----------

export function table(headers: string[], rows: (string | number | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === undefined ? '' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `  ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}`.trimEnd();
  return [line(cells[0]!), `  ${widths.map((w) => '-'.repeat(w)).join('  ')}`, ...cells.slice(1).map(line)].join('\n');
}

// ---------- processes ----------

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a program (argv, never a shell string unless the caller asks for bash explicitly). */
export function run(file: string, args: readonly string[], options: SpawnOptions & { input?: string; allowFail?: boolean } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file, args, { ...options, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      const result = { code, stdout, stderr, seconds: (performance.now() - started) / 1000 };
      if (code !== 0 && !options.allowFail) {
        reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      } else resolve(result);
    });
    if (options.input !== undefined) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(options.input);
    }
  });
}

export interface Measured {
  /** Spawn → exit, seconds. */
  wall: number;
  /** User + system CPU seconds of the process and the children it waited for (GNU time). */
  cpu?: number | undefined;
  /** Peak RSS (VmHWM) of the process, KiB (GNU time %M). */
  maxRssKiB?: number | undefined;
  stdout: string;
}

let timeCounter = 0;

/** Runs argv under GNU time (when installed) for wall, CPU and peak RSS; the figures go to a file, not stderr. */
export async function measure(argv: string[], tmp: string, options: SpawnOptions = {}): Promise<Measured> {
  const time = which('time');
  if (!time) {
    const r = await run(argv[0]!, argv.slice(1), options);
    return { wall: r.seconds, stdout: r.stdout };
  }
  const file = join(tmp, `time-${process.pid}-${timeCounter++}`);
  try {
    const r = await run(time, ['-f', '%U %S %M', '-o', file, ...argv], options);
    const [user, sys, rss] = (await readFile(file, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
    return { wall: r.seconds, cpu: user! + sys!, maxRssKiB: rss, stdout: r.stdout };
  } finally {
    await rm(file, { force: true });
  }
}

export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export function requireTools(...names: string[]): void {
  const missing = names.filter((n) => !which(n));
  if (missing.length) throw new Skip(`${missing.join(', ')} not installed`);
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Skip(`not root (${what} needs root)`);
}

export { freePort } from '../../test/helpers/registry.ts';

// ---------- /proc ----------

/** VmRSS/VmHWM in KiB from /proc/<pid>/status (undefined once the process is gone). */
export async function procMemory(pid: number | 'self'): Promise<{ rssKiB: number; hwmKiB: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a live process has used so far, from /proc/<pid>/stat. */
export async function procCpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

// USER_HZ: 100 on every Linux we run on (getconf CLK_TCK).
const CLOCK_TICKS = 100;

// ---------- temp dirs ----------

export async function withTempDir<T>(parent: string, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(parent, prefix));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function benchTmpParent(): string {
  return process.env.BENCH_TMPDIR ?? tmpdir();
}

/** Runs `turns` in an order rotated by `round`, so no contender always goes first (warm caches, writeback). */
export async function rotated(round: number, turns: (() => Promise<unknown>)[]): Promise<void> {
  for (let k = 0; k < turns.length; k++) await turns[(round + k) % turns.length]!();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Stops a child we started: SIGTERM, then SIGKILL if it is still running after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Whether a repository-relative module exists yet (another helper may still be writing it). */
export function moduleExists(relative: string): boolean {
  return existsSync(join(ROOT, relative));
}

// ---------- cleanup on Ctrl-C ----------

const cleanups = new Set<() => Promise<unknown> | unknown>();

/**
 * Registers a cleanup (detach a loop device, stop a registry) that also runs on SIGINT/SIGTERM;
 * call the returned function in `finally` to run it now and unregister it.
 */
export function deferCleanup(fn: () => Promise<unknown> | unknown): () => Promise<void> {
  cleanups.add(fn);
  return async () => {
    if (!cleanups.delete(fn)) return;
    await fn();
  };
}

export async function runAllCleanups(): Promise<void> {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup failed: ${(err as Error).message}\n`);
    }
  }
}
