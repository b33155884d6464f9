/**
 * Issues 3 and 17: a zstd-compressed disk artifact decompressed on the fly onto a loop device,
 * the agent (`bootc-agent fetch`; with `BENCH_BEFORE=REV` also the agent as of REV) against the
 * unverified pipe `curl blob | zstd -dc | dd` (issue 17's baseline) and `zstd -dc FILE | dd`
 * from a local file. Context rows: `zstd -dc` alone (decompression ceiling) and `dd` of the
 * uncompressed bytes (disk floor).
 * @module
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeFetchPrefix, CURL_TAILS, curlBlobInto, helpPeakRss, peakRssKiB, runAgentFetch, type FetchRun } from './agent-fetch.ts';
import { fetchCommandPrefix } from './bundle.ts';
import {
  fmtBytes, fmtMiB, fmtSpeedup, measure, median, requireRoot, requireTools, rotated, run, table, verdict,
  withTempDir, type BenchContext, type Measured, type Section,
} from './common.ts';
import { withRegistryAndLoop } from './loop.ts';
import { agentRows, columns, ddToDevice, phaseSummary, row } from './raw-loop.ts';
import { pushArtifactManifest, writeDiskLikeFile } from './registry.ts';

const REPO = 'bench/disk';

// `zstd -dc FILE | dd of=DEV`: bash only wires the pipe; paths are positional arguments, not code.
async function zstdPipeDd(zst: string, device: string, tmp: string): Promise<Measured> {
  await run('sync', []);
  return measure(['bash', '-c', 'set -o pipefail; zstd -q -dc -- "$1" | dd of="$2" bs=1M conv=fsync status=none', 'bench', zst, device], tmp);
}

async function runZstd(ctx: BenchContext): Promise<void> {
  requireRoot('loop devices');
  requireTools('losetup', 'dd', 'zstd', 'bash', 'curl', 'docker-registry', 'openssl', 'htpasswd');
  const { zstdSize: size, runs } = ctx.options;
  const { argv: agent, note } = await fetchCommandPrefix(ctx);
  console.log(`  agent: ${agent.map((a) => a.replace(`${process.execPath}`, 'node')).join(' ')} … (${note})`);
  await withTempDir(ctx.tmp, 'zstd-', async (dir) => {
    const before = await beforeFetchPrefix(dir);
    await withRegistryAndLoop(dir, size, async (br, loop) => {
      const raw = join(dir, 'disk.raw');
      const zst = `${raw}.zst`;
      ctx.log(`zstd: writing, compressing and pushing ${fmtBytes(size)}`);
      await writeDiskLikeFile(raw, size);
      await run('zstd', ['-q', '-3', '-T0', '-f', '-o', zst, '--', raw]);
      const compressed = (await stat(zst)).size;
      const blob = await br.pushFile(REPO, zst);
      await pushArtifactManifest(br, REPO, 'zst', blob, 'disk.raw.zst', 'application/zstd');
      const source = `oci://${br.reg.host}/${REPO}:zst`;
      const auth = { authFile: br.authFile, certsDir: br.reg.certsDir };

      const t = { agent: [] as FetchRun[], before: [] as FetchRun[], curl: [] as Measured[], pipe: [] as Measured[], decompress: [] as Measured[], dd: [] as Measured[] };
      for (let i = 0; i < runs; i++) {
        ctx.log(`zstd: run ${i + 1}/${runs}`);
        await rotated(i, [
          async () => { t.agent.push(await runAgentFetch(agent, source, loop.device, auth, dir)); },
          async () => { if (before) t.before.push(await runAgentFetch(before.argv, source, loop.device, auth, dir)); },
          async () => { t.curl.push(await curlBlobInto(br, REPO, blob.digest, CURL_TAILS.zstdDd, loop.device, dir)); },
          async () => { t.pipe.push(await zstdPipeDd(zst, loop.device, dir)); },
          async () => { t.decompress.push(await measure(['zstd', '-q', '-dc', '-o', '/dev/null', '--', zst], dir)); },
          async () => { t.dd.push(await ddToDevice(raw, loop.device, dir)); },
        ]);
      }
      const pipe = median(t.pipe.map((m) => m.wall));
      const curlPipe = median(t.curl.map((m) => m.wall));
      const agentWall = median(t.agent.map((r) => r.wall));
      const rss = peakRssKiB(t.agent);
      const ok = t.agent.every((r) => r.bytes === size && r.compression === 'zstd');
      console.log(`  ${fmtBytes(size)} disk-like data (zeros, random, text-like blocks) → ${fmtBytes(compressed)} with zstd -3 (${(size / compressed).toFixed(2)}:1); `
        + `${runs} runs, median, order rotated per run; throughput counts uncompressed bytes; cpu = user+system CPU seconds incl. children${ok ? '' : '; WARNING: the agent reported other sizes/compression'}`);
      console.log(table(columns('decompress onto the loop device', 'vs curl|zstd|dd'), [
        row('curl blob | zstd -dc | dd bs=1M conv=fsync (unverified pipe: the baseline)', t.curl, size, curlPipe),
        ...agentRows(t.agent, size, curlPipe, 'agent: bootc-agent fetch oci:// → device'),
        ...(before ? agentRows(t.before, size, curlPipe, `agent as of ${before.rev}`) : []),
        row('zstd -dc FILE | dd bs=1M conv=fsync (from a local file)', t.pipe, size, curlPipe),
        row('context: zstd -dc → /dev/null (decompression only)', t.decompress, size, undefined),
        row('context: dd of the uncompressed file (disk only)', t.dd, size, undefined),
      ]));
      console.log(`  where the agent's time goes (median seconds each stage held the pipeline up; stages overlap): ${phaseSummary(t.agent)}`);
      console.log(`  agent peak RSS ${fmtMiB(rss)} (the zstd child is counted by time(1) only if larger); loading the code alone: ${fmtMiB(await helpPeakRss(agent))}`);
      console.log(`  targets: agent vs curl | zstd -dc | dd ≥ 0.85× → ${fmtSpeedup(curlPipe, agentWall)} ${verdict(curlPipe / agentWall >= 0.85)}; `
        + `(context: agent vs zstd -dc FILE | dd ${fmtSpeedup(pipe, agentWall)}); agent peak RSS ≤ 80 MiB → ${fmtMiB(rss)} ${verdict(rss === undefined ? undefined : rss <= 80 * 1024)}`);
    });
  });
}

export const zstdSection: Section = {
  name: 'zstd',
  title: 'zstd disk artifact → loop device: agent vs curl|zstd -dc|dd and zstd -dc|dd; peak RSS (issues 3, 17)',
  run: runZstd,
};
