/**
 * Issues 3 and 17: a raw disk artifact from the registry onto a loop device. The agent
 * (`bootc-agent fetch`, its own process; with `BENCH_BEFORE=REV` also the agent as of REV)
 * against the unverified pipe `curl blob | dd oflag=direct` (issue 17's baseline), `dd` of the
 * same bytes from a local file (the floor: no network, no hashing) and `skopeo copy` to a dir
 * then `dd` (what one would script without the agent). Every row ends with an fsync.
 * @module
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeFetchPrefix, CURL_TAILS, curlBlobInto, helpPeakRss, peakRssKiB, runAgentFetch, type FetchRun } from './agent-fetch.ts';
import { fetchCommandPrefix } from './bundle.ts';
import {
  fmtBytes, fmtCpu, fmtMiB, fmtRate, fmtSeconds, fmtSpeedup, measure, median, requireRoot, requireTools, rotated, run, spread, table, verdict,
  withTempDir, type BenchContext, type Measured, type Section,
} from './common.ts';
import { withRegistryAndLoop } from './loop.ts';
import { Writable } from 'node:stream';
import { createOciClient } from '../../src/oci/index.ts';
import { pushArtifactManifest, writeRandomFile } from './registry.ts';

const REPO = 'bench/disk';
const RSS_TARGET_KIB = 80 * 1024;

export async function ddToDevice(input: string, device: string, tmp: string, flags: string[] = ['conv=fsync']): Promise<Measured> {
  await run('sync', []);
  return measure(['dd', `if=${input}`, `of=${device}`, 'bs=1M', ...flags, 'status=none'], tmp);
}

const walls = (ms: Measured[]) => ms.map((m) => m.wall);
const rssOf = (values: (number | undefined)[]) => {
  const v = median(values.map((x) => x ?? NaN));
  return Number.isNaN(v) ? '' : fmtMiB(v);
};
const cpus = (ms: Measured[]) => ms.map((m) => m.cpu);

// The largest file skopeo left in its dir: the artifact's one layer.
async function skopeoBlob(dir: string): Promise<string> {
  let best = { path: '', size: -1 };
  for (const name of await readdir(dir)) {
    const size = (await stat(join(dir, name))).size;
    if (size > best.size) best = { path: join(dir, name), size };
  }
  return best.path;
}

/** Median of each phase over the agent runs, as "network 1.2 s, disk 0.4 s, …". */
export function phaseSummary(runs: FetchRun[]): string {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.phases)))];
  return names.map((n) => `${n} ${fmtSeconds(median(runs.map((r) => r.phases[n] ?? 0)))}`).join(', ');
}

export function agentRows(runs: FetchRun[], bytes: number, baseline: number, label: string): (string | undefined)[][] {
  const wall = median(runs.map((r) => r.wall));
  const inner = median(runs.map((r) => r.seconds));
  return [
    [label, fmtSeconds(wall), fmtCpu(runs.map((r) => r.cpu)), rssOf(runs.map((r) => r.maxRssKiB)), fmtRate(bytes, wall), fmtSpeedup(baseline, wall), spread(runs.map((r) => r.wall))],
    ['  of which writeArtifactToTarget itself', fmtSeconds(inner), '', '', fmtRate(bytes, inner), fmtSpeedup(baseline, inner), ''],
  ];
}

/** A table row for plain measurements: median wall, CPU and peak RSS, throughput, ratio to a baseline. */
export function row(label: string, ms: Measured[], bytes: number, baseline: number | undefined): (string | undefined)[] {
  const wall = median(walls(ms));
  return [label, fmtSeconds(wall), fmtCpu(cpus(ms)), rssOf(ms.map((m) => m.maxRssKiB)), fmtRate(bytes, wall), baseline === undefined ? '' : fmtSpeedup(baseline, wall), spread(walls(ms))];
}

/** The columns of `row` and `agentRows`, the ratio column named for its baseline. */
export const columns = (what: string, vs: string): string[] => [what, 'wall', 'cpu', 'peak RSS', 'throughput', vs, 'min–max'];

async function runRawLoop(ctx: BenchContext): Promise<void> {
  requireRoot('loop devices');
  requireTools('losetup', 'dd', 'skopeo', 'curl', 'bash', 'docker-registry', 'openssl', 'htpasswd');
  const { size, runs } = ctx.options;
  const { argv: agent, note } = await fetchCommandPrefix(ctx);
  console.log(`  agent: ${agent.map((a) => a.replace(`${process.execPath}`, 'node')).join(' ')} … (${note})`);
  await withTempDir(ctx.tmp, 'raw-', async (dir) => {
    const before = await beforeFetchPrefix(dir);
    await withRegistryAndLoop(dir, size, async (br, loop) => {
      const raw = join(dir, 'disk.raw');
      ctx.log(`raw: writing and pushing ${fmtBytes(size)}`);
      await writeRandomFile(raw, size);
      const blob = await br.pushFile(REPO, raw);
      await pushArtifactManifest(br, REPO, 'raw', blob, 'disk.raw', 'application/octet-stream');
      const source = `oci://${br.reg.host}/${REPO}:raw`;
      const auth = { authFile: br.authFile, certsDir: br.reg.certsDir };

      const t = {
        agent: [] as FetchRun[], before: [] as FetchRun[], curlDd: [] as Measured[], curl: [] as Measured[],
        dd: [] as Measured[], direct: [] as Measured[], skopeo: [] as Measured[], skopeoDd: [] as Measured[], net: [] as Measured[],
      };
      // The network ceiling: our OCI client's verified stream (TLS, HTTP, SHA-256) into nothing, in this process.
      const client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [br.reg.certsDir] });
      const image = await client.inspectImage(source, { credentials: br.credentials, kind: 'artifact' });
      const netOnly = async (): Promise<Measured> => {
        await run('sync', []);
        const cpu0 = process.cpuUsage();
        const started = performance.now();
        await client.downloadBlob(image, { mediaType: image.layers[0]!.mediaType, digest: image.layers[0]!.digest, size: image.layers[0]!.size },
          new Writable({ highWaterMark: 1 << 20, write(_c, _e, cb) { cb(); } }), { credentials: br.credentials });
        const cpu = process.cpuUsage(cpu0);
        return { wall: (performance.now() - started) / 1000, cpu: (cpu.user + cpu.system) / 1e6, stdout: '' };
      };
      for (let i = 0; i < runs; i++) {
        ctx.log(`raw: run ${i + 1}/${runs}`);
        await rotated(i, [
          async () => { t.agent.push(await runAgentFetch(agent, source, loop.device, auth, dir)); },
          async () => { if (before) t.before.push(await runAgentFetch(before.argv, source, loop.device, auth, dir)); },
          async () => { t.curlDd.push(await curlBlobInto(br, REPO, blob.digest, CURL_TAILS.ddDirect, loop.device, dir)); },
          async () => { t.curl.push(await curlBlobInto(br, REPO, blob.digest, CURL_TAILS.discard, loop.device, dir)); },
          async () => { t.dd.push(await ddToDevice(raw, loop.device, dir)); },
          async () => { t.direct.push(await ddToDevice(raw, loop.device, dir, ['oflag=direct'])); },
          async () => { t.net.push(await netOnly()); },
          async () => {
            const copyDir = join(dir, `skopeo-${i}`);
            await run('sync', []);
            t.skopeo.push(await measure([
              'skopeo', 'copy', '--insecure-policy', '--quiet', '--src-authfile', br.authFile, '--src-cert-dir', br.certDir, `docker://${br.reg.host}/${REPO}:raw`, `dir:${copyDir}`,
            ], dir));
            t.skopeoDd.push(await ddToDevice(await skopeoBlob(copyDir), loop.device, dir));
            await run('rm', ['-rf', '--', copyDir]);
          },
        ]);
      }
      await client.close();
      report(t, size, runs, loop.device, before?.rev);
      const loadRss = await helpPeakRss(agent);
      const rss = peakRssKiB(t.agent);
      console.log(`  agent peak RSS ${fmtMiB(rss)}, of which loading the code (peak RSS of \`fetch --help\`): ${fmtMiB(loadRss)}`);
      console.log(`  agent peak RSS ≤ ${RSS_TARGET_KIB / 1024} MB (read as MiB) → ${fmtMiB(rss)} ${verdict(rss === undefined ? undefined : rss <= RSS_TARGET_KIB)}`);
    });
  });
}

type RawTimes = Record<'curlDd' | 'curl' | 'dd' | 'direct' | 'skopeo' | 'skopeoDd' | 'net', Measured[]> & Record<'agent' | 'before', FetchRun[]>;

function report(t: RawTimes, size: number, runs: number, device: string, beforeRev: string | undefined): void {
  const curlDd = median(walls(t.curlDd));
  const dd = median(walls(t.dd));
  const combined: Measured[] = t.skopeo.map((m, i) => ({ wall: m.wall + t.skopeoDd[i]!.wall, cpu: m.cpu === undefined || t.skopeoDd[i]!.cpu === undefined ? undefined : m.cpu + t.skopeoDd[i]!.cpu!, stdout: '' }));
  const skopeoTotal = median(walls(combined));
  const agentWall = median(t.agent.map((r) => r.wall));
  console.log(`  ${fmtBytes(size)} of incompressible data on ${device} (sparse file on the temp dir's disk); ${runs} runs, median, order rotated per run; \`sync\` before each; `
    + 'cpu = user+system CPU seconds of the process and its children (not the registry\'s); peak RSS of the largest process');
  console.log(table(columns('write the artifact to the loop device', 'vs curl|dd'), [
    row('curl blob | dd oflag=direct (unverified pipe: the baseline)', t.curlDd, size, curlDd),
    ...agentRows(t.agent, size, curlDd, 'agent: bootc-agent fetch oci:// → device'),
    ...(beforeRev ? agentRows(t.before, size, curlDd, `agent as of ${beforeRev}`) : []),
    row('context: curl blob → /dev/null (the wire alone)', t.curl, size, curlDd),
    row('context: OCI client stream → nothing, in the bench process', t.net, size, curlDd),
    row('dd bs=1M conv=fsync from a local file (floor)', t.dd, size, curlDd),
    row('dd bs=1M oflag=direct from a local file', t.direct, size, curlDd),
    row('skopeo copy → dir: + dd conv=fsync', combined, size, curlDd),
  ]));
  console.log(`  where the agent's time goes (median seconds each stage held the pipeline up; stages overlap): ${phaseSummary(t.agent)}`);
  console.log(`  process start + resolve + partition re-read (wall − pipeline): ${fmtSeconds(agentWall - median(t.agent.map((r) => r.seconds)))}; partitions re-read with: ${t.agent[0]?.partitionsReread.join(', ') || 'none'}`);
  console.log(`  targets: agent vs curl|dd oflag=direct ≥ 0.85× → ${fmtSpeedup(curlDd, agentWall)} ${verdict(curlDd / agentWall >= 0.85)}; `
    + `agent vs dd from a file ≥ 0.9× → ${fmtSpeedup(dd, agentWall)} ${verdict(dd / agentWall >= 0.9)}; `
    + `agent vs skopeo+dd ≥ 1.5× faster → ${fmtSpeedup(skopeoTotal, agentWall)} ${verdict(skopeoTotal / agentWall >= 1.5)}`);
}

export const rawLoopSection: Section = {
  name: 'raw',
  title: 'raw disk artifact → loop device: agent vs curl|dd oflag=direct, dd, skopeo+dd; peak RSS (issues 3, 17)',
  run: runRawLoop,
};
