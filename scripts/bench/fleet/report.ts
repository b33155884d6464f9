/**
 * The fleet section's output: a line per round as it ends, then the table over all rounds and
 * the issue's two targets.
 * @module
 */
import { fmtBytes, fmtSeconds, median, table, verdict } from '../common.ts';
import type { FleetOptions } from './options.ts';
import type { CacheEngine } from './cache.ts';
import { servedBy, type Kind, type RoundResult } from './rounds.ts';

const ORIGIN_BYTES_TARGET = 1.1;
const WALL_TARGET = 2;

function label(r: RoundResult): string {
  const cache = `${r.spec.engine ?? ''} cache`;
  const how = r.spec.mode === 'origin' ? 'origin'
    : r.spec.killAtS !== undefined ? `${cache} killed at ${r.spec.killAtS.toFixed(1)} s`
    : r.spec.canary ? `${cache}, 1 node first` : `${cache} (cold)`;
  return `${r.spec.kind.padEnd(5)} N=${String(r.spec.n).padStart(2)} ${how}`;
}

function rates(r: RoundResult, imageBytes: number): string {
  const mbs = r.outcomes.filter((o) => o.ok).map((o) => imageBytes / o.seconds / 1e6);
  if (mbs.length === 0) return 'n/a';
  return `${Math.min(...mbs).toFixed(1)}/${median(mbs).toFixed(1)}/${Math.max(...mbs).toFixed(1)}`;
}

function failures(r: RoundResult): string {
  const failed = r.outcomes.filter((o) => !o.ok);
  return failed.length ? `${failed.length}: ${failed[0]!.error?.slice(0, 900)}` : '0';
}

export function printRound(r: RoundResult): void {
  const times = r.outcomes.map((o) => o.seconds);
  console.log(`  ${label(r)}: wall ${fmtSeconds(r.wall)} (nodes ${fmtSeconds(Math.min(...times))}–${fmtSeconds(Math.max(...times))}), `
    + `origin served ${fmtBytes(r.originBytes)} over ${r.originConnections} connections, failures ${failures(r)}${r.spec.killAtS !== undefined ? `, cache ${r.killed ? 'killed' : 'NOT killed (the round ended first)'}` : ''}; `
    + `CPU: agents ${fmtSeconds(r.agentsCpu)}, cache ${fmtSeconds(r.cacheCpu)}, machine ${fmtSeconds(r.machineCpu)} of ${fmtSeconds(2 * r.wall)}; sources: ${servedBy(r.outcomes)}`);
}

export function printSummary(results: RoundResult[], images: Partial<Record<Kind, { bytes: number }>>, o: FleetOptions): void {
  console.log('');
  console.log(table(
    ['round', 'wall', 'node min–max', 'MB/s per node min/med/max', 'origin bytes', '× one image', 'failed', 'agents CPU', 'machine CPU'],
    results.map((r) => {
      const bytes = images[r.spec.kind]!.bytes;
      const times = r.outcomes.map((x) => x.seconds);
      return [label(r), fmtSeconds(r.wall), `${fmtSeconds(Math.min(...times))}–${fmtSeconds(Math.max(...times))}`, rates(r, bytes),
        fmtBytes(r.originBytes), `${(r.originBytes / bytes).toFixed(2)}×`, `${r.outcomes.filter((x) => !x.ok).length}/${r.spec.n}`,
        fmtSeconds(r.agentsCpu), fmtSeconds(r.machineCpu)];
    }),
  ));
  const maxN = Math.max(...o.nodes);
  for (const kind of o.kinds) for (const engine of o.caches) printTargets(results, kind, engine, images[kind]!.bytes, maxN);
}

function printTargets(results: RoundResult[], kind: Kind, engine: CacheEngine, bytes: number, maxN: number): void {
  const find = (mode: 'origin' | 'cache', n: number, canary = false) => results.find((r) => r.spec.kind === kind && r.spec.mode === mode
    && (mode === 'origin' || r.spec.engine === engine) && r.spec.n === n && r.spec.killAtS === undefined && (r.spec.canary ?? false) === canary);
  const one = find('cache', 1);
  const direct = find('origin', maxN);
  for (const many of [find('cache', maxN), find('cache', maxN, true)]) {
    if (!many) continue;
    const how = `${engine}, ${many.spec.canary ? 'one node first, then the rest at once' : 'all at once, cold'}`;
    const ratio = many.originBytes / bytes;
    console.log(`  target ${kind} (${how}): origin bytes for N=${maxN} through the cache ≤ ${ORIGIN_BYTES_TARGET}× one image: ${ratio.toFixed(2)}× → ${verdict(ratio <= ORIGIN_BYTES_TARGET)}`
      + `${direct ? ` (without the cache: ${(direct.originBytes / bytes).toFixed(2)}×)` : ''}`);
    if (!one) continue;
    const wall = many.wall / one.wall;
    console.log(`  target ${kind} (${how}): wall for N=${maxN} through the cache ≤ ${WALL_TARGET}× one node: ${fmtSeconds(many.wall)} / ${fmtSeconds(one.wall)} = ${wall.toFixed(2)}× → ${verdict(wall <= WALL_TARGET)}`
      + `${direct ? ` (without the cache N=${maxN}: ${fmtSeconds(direct.wall)})` : ''}`);
  }
  const killed = results.find((r) => r.spec.kind === kind && r.spec.engine === engine && r.spec.killAtS !== undefined);
  if (killed) console.log(`  ${engine} cache killed mid-round, ${kind}: ${killed.outcomes.filter((x) => x.ok).length}/${killed.spec.n} nodes succeeded → ${verdict(killed.killed && killed.outcomes.every((x) => x.ok))}`);
}
