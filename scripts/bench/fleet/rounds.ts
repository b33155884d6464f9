/**
 * One round of the fleet bench: the first N agents deploy the same image at the same moment,
 * through the cache or straight from the origin; what the origin's link carried, how long the
 * fleet took, each node's time and throughput, CPU, failures, and which source each node's
 * result names. A round through the cache starts cold (store emptied), so the origin's bytes
 * are what one wave of N nodes costs.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { procCpuSeconds, run } from '../common.ts';
import { emptyStore, type FleetAgent, type StepOutcome } from './agents.ts';
import type { CacheEngine, PullThroughCache } from './cache.ts';
import type { ThrottledLink } from './throttle.ts';

export type Kind = 'raw' | 'bootc';
export type Mode = 'origin' | 'cache';

export interface RoundSpec {
  mode: Mode;
  /** The cache a `cache` round goes through. */
  engine?: CacheEngine | undefined;
  kind: Kind;
  n: number;
  /** Kill the cache this many seconds into the round (it stays down until the round ends). */
  killAtS?: number | undefined;
  /**
   * One node deploys first, alone, and the other N − 1 at once after it: the cache is warm for
   * them. Both parts count in the round's wall time and origin bytes.
   */
  canary?: boolean | undefined;
}

export interface RoundResult {
  spec: RoundSpec;
  wall: number;
  originBytes: number;
  originConnections: number;
  outcomes: StepOutcome[];
  agentsCpu: number;
  cacheCpu: number;
  machineCpu: number;
  /** Whether the kill happened before the round ended. */
  killed: boolean;
}

export interface FleetSetting {
  link: ThrottledLink;
  /** The cache of this round's engine (killed before an origin round). */
  cache: PullThroughCache;
  /** The step and its arguments for each kind. */
  steps: Record<Kind, { step: string; args: Record<string, unknown> }>;
  timeoutS: number;
}

/** Busy CPU seconds of the whole machine so far (every process, ours or not), from /proc/stat. */
async function machineCpuSeconds(): Promise<number> {
  const cpu = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return (user + nice + system + irq + softirq + steal) / 100;
}

async function cpuSum(pids: (number | undefined)[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) if (pid !== undefined) sum += (await procCpuSeconds(pid)) ?? 0;
  return sum;
}

async function prepare(setting: FleetSetting, agents: FleetAgent[], spec: RoundSpec): Promise<void> {
  for (const a of agents) {
    if (spec.kind === 'bootc') await emptyStore(a.storageConf);
    await run('partx', ['-d', '--', a.disk.device], { allowFail: true });
  }
  await run('sync', []);
  await setting.cache.kill();
  if (spec.mode === 'cache') {
    await setting.cache.wipe();
    await setting.cache.start();
  }
}

export async function runRound(setting: FleetSetting, pool: FleetAgent[], spec: RoundSpec): Promise<RoundResult> {
  const agents = pool.slice(0, spec.n);
  await prepare(setting, agents, spec);
  const { link, cache } = setting;
  link.resetCounters();
  const agentsCpu0 = await cpuSum(agents.map((a) => a.pid));
  const cacheCpu0 = await cpuSum(await cache.pids());
  const machine0 = await machineCpuSeconds();
  let killed = false;
  let cacheCpuAtKill = 0;
  const timer = spec.killAtS === undefined ? undefined : setTimeout(() => {
    void cache.pids().then(cpuSum).then((c) => { cacheCpuAtKill = c; killed = true; return cache.kill(); });
  }, spec.killAtS * 1000);
  const started = performance.now();
  const { step, args } = setting.steps[spec.kind];
  const deploy = (a: FleetAgent) => a.deploy(step, args, setting.timeoutS).catch((err: unknown): StepOutcome => ({ ok: false, seconds: (performance.now() - started) / 1000, error: String(err) }));
  const first = spec.canary ? [await deploy(agents[0]!)] : [];
  const outcomes = [...first, ...await Promise.all(agents.slice(first.length).map(deploy))];
  const wall = (performance.now() - started) / 1000;
  clearTimeout(timer);
  const cacheCpu = (killed ? cacheCpuAtKill : await cpuSum(await cache.pids())) - cacheCpu0;
  return {
    spec, wall, outcomes, killed, cacheCpu,
    originBytes: link.served(),
    originConnections: link.connections(),
    agentsCpu: (await cpuSum(agents.map((a) => a.pid))) - agentsCpu0,
    machineCpu: (await machineCpuSeconds()) - machine0,
  };
}

/**
 * Which source each node's result names, counted: its `source` (`{registry, repository, mirror}`,
 * where the image was resolved, or for a disk image where the end of the blob came from);
 * `unreported` when the result names none.
 */
export function servedBy(outcomes: StepOutcome[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) {
    let label = 'unreported';
    const walk = (value: unknown, key: string): void => {
      if (!value || typeof value !== 'object') return;
      const v = value as Record<string, unknown>;
      if (key === 'source' && typeof v.registry === 'string') label = `${v.registry}${v.mirror ? ' (mirror)' : ''}`;
      else for (const [k, child] of Object.entries(v)) walk(child, k);
    };
    walk(o.result, '');
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  return [...counts].map(([label, n]) => `${n}× ${label}`).join('; ');
}
