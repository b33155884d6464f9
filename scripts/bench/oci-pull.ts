/**
 * Issue 3, part 1: pulling every blob of a multi-layer image from a real TLS registry into a
 * directory, our OCI client (src/oci) against `skopeo copy docker://… dir:…`. Also the pieces
 * of our time: the bare wire (undici GET, no hashing), SHA-256 alone, the verified stream
 * without the disk, then with it.
 * @module
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { createOciClient, type ImageInspection, type OciClient } from '../../src/oci/index.ts';
import {
  fmtBytes, fmtCpu, fmtRate, fmtSeconds, fmtSpeedup, measure, median, requireTools, rotated, run, spread, table, verdict,
  type BenchContext, type Section,
} from './common.ts';
import { pushImageManifest, startBenchRegistry, writeRandomFile, type BenchRegistry } from './registry.ts';

const REPO = 'bench/image';

function discard(): Writable {
  return new Writable({ highWaterMark: 1 << 20, write(_chunk, _enc, cb) { cb(); } });
}

// SHA-256 throughput of this process on in-memory data, bytes/s.
function sha256Rate(): number {
  const buf = Buffer.alloc(64 << 20, 7);
  const hash = createHash('sha256');
  hash.update(buf); // warm up
  const started = performance.now();
  for (let i = 0; i < 8; i++) hash.update(buf);
  hash.digest();
  return (8 * buf.length) / ((performance.now() - started) / 1000);
}

// The wire without our client: plain undici GETs of each blob, bytes dropped, nothing hashed.
async function wireOnly(br: BenchRegistry, image: ImageInspection): Promise<void> {
  const authorization = `Basic ${Buffer.from(`${br.reg.username}:${br.reg.password}`).toString('base64')}`;
  for (const layer of image.layers) {
    const res = await request(`${br.reg.url}/v2/${REPO}/blobs/${layer.digest}`, { dispatcher: br.agent, headers: { authorization, 'accept-encoding': 'identity' } });
    if (res.statusCode !== 200) throw new Error(`GET blob: HTTP ${res.statusCode}`);
    for await (const _chunk of res.body) { /* drop */ }
  }
}

async function clientPull(client: OciClient, image: ImageInspection, br: BenchRegistry, outDir: string | undefined, parallel: boolean): Promise<void> {
  if (outDir) await mkdir(outDir, { recursive: true });
  const one = (layer: ImageInspection['layers'][number]) => client.downloadBlob(
    image, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size },
    outDir ? createWriteStream(join(outDir, layer.digest.replace(':', '-'))) : discard(),
    { credentials: br.credentials },
  );
  if (parallel) await Promise.all(image.layers.map(one));
  else for (const layer of image.layers) await one(layer);
}

// Wall and CPU seconds of work done inside this process (nothing else runs in it meanwhile).
async function timed(fn: () => Promise<unknown>): Promise<Sample> {
  await run('sync', []);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  await fn();
  const cpu = process.cpuUsage(cpu0);
  return { wall: (performance.now() - started) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
}

interface Sample {
  wall: number;
  cpu?: number | undefined;
}

async function runOciPull(ctx: BenchContext): Promise<void> {
  requireTools('skopeo', 'docker-registry', 'openssl', 'htpasswd');
  const { imageSize, layers: layerCount, runs } = ctx.options;
  const layerSize = Math.floor(imageSize / layerCount);
  const total = layerSize * layerCount;
  const dataDir = join(ctx.tmp, 'oci-data');
  await mkdir(dataDir, { recursive: true });
  const br = await startBenchRegistry(dataDir);
  let client: OciClient | undefined;
  try {
    ctx.log(`oci: writing and pushing ${layerCount} × ${fmtBytes(layerSize)}`);
    const pushed = [];
    for (let i = 0; i < layerCount; i++) {
      const path = join(dataDir, `layer-${i}`);
      await writeRandomFile(path, layerSize);
      pushed.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await br.pushFile(REPO, path)) });
      await rm(path);
    }
    await pushImageManifest(br, REPO, 'v1', pushed);
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [br.reg.certsDir] });
    const image = await client.inspectImage(`oci://${br.reg.host}/${REPO}:v1`, { credentials: br.credentials, platform: { architecture: 'amd64' } });

    const t = { wire: [] as Sample[], discard: [] as Sample[], seq: [] as Sample[], par: [] as Sample[], skopeo: [] as Sample[] };
    for (let i = 0; i < runs; i++) {
      ctx.log(`oci: run ${i + 1}/${runs}`);
      await rotated(i, [
        async () => { t.wire.push(await timed(() => wireOnly(br, image))); },
        async () => { t.discard.push(await timed(() => clientPull(client!, image, br, undefined, false))); },
        async () => {
          const seqDir = join(ctx.tmp, `client-seq-${i}`);
          t.seq.push(await timed(() => clientPull(client!, image, br, seqDir, false)));
          await rm(seqDir, { recursive: true, force: true });
        },
        async () => {
          const parDir = join(ctx.tmp, `client-par-${i}`);
          t.par.push(await timed(() => clientPull(client!, image, br, parDir, true)));
          await rm(parDir, { recursive: true, force: true });
        },
        async () => {
          const skopeoDir = join(ctx.tmp, `skopeo-${i}`);
          await run('sync', []);
          t.skopeo.push(await measure([
            'skopeo', 'copy', '--insecure-policy', '--quiet', '--src-authfile', br.authFile, '--src-cert-dir', br.certDir,
            `docker://${br.reg.host}/${REPO}:v1`, `dir:${skopeoDir}`,
          ], ctx.tmp));
          await rm(skopeoDir, { recursive: true, force: true });
        },
      ]);
    }
    const w = (xs: Sample[]) => median(xs.map((x) => x.wall));
    const c = (xs: Sample[]) => fmtCpu(xs.map((x) => x.cpu));
    const m = { wire: w(t.wire), discard: w(t.discard), seq: w(t.seq), par: w(t.par), skopeo: w(t.skopeo) };
    const sp = (xs: Sample[]) => spread(xs.map((x) => x.wall));
    const sha = sha256Rate();
    const best = Math.min(m.seq, m.par);
    console.log(`  image: ${layerCount} layers × ${fmtBytes(layerSize)} = ${fmtBytes(total)} of incompressible data, TLS + Basic auth, 127.0.0.1; ${runs} runs, median, order rotated per run; \`sync\` before each;`);
    console.log('  our client runs inside the bench process (cpu = its user+system seconds); skopeo is its own process; the registry\'s CPU is in neither');
    console.log(table(['pull all blobs', 'wall', 'cpu', 'throughput', 'vs skopeo', 'min–max'], [
      ['skopeo copy docker:// → dir: (baseline)', fmtSeconds(m.skopeo), c(t.skopeo), fmtRate(total, m.skopeo), '1.00×', sp(t.skopeo)],
      ['our client → files, layers one by one', fmtSeconds(m.seq), c(t.seq), fmtRate(total, m.seq), fmtSpeedup(m.skopeo, m.seq), sp(t.seq)],
      ['our client → files, layers in parallel', fmtSeconds(m.par), c(t.par), fmtRate(total, m.par), fmtSpeedup(m.skopeo, m.par), sp(t.par)],
    ]));
    console.log('  where our time goes (one by one):');
    console.log(table(['component', 'wall', 'cpu', 'throughput', 'share of client → files'], [
      ['wire only: undici GET, bytes dropped, no hash', fmtSeconds(m.wire), c(t.wire), fmtRate(total, m.wire), `${((m.wire / m.seq) * 100).toFixed(0)} %`],
      ['SHA-256 alone, in memory (this process)', fmtSeconds(total / sha), '', fmtRate(total, total / sha), `${((total / sha / m.seq) * 100).toFixed(0)} %`],
      ['client, verified stream, no disk', fmtSeconds(m.discard), c(t.discard), fmtRate(total, m.discard), `${((m.discard / m.seq) * 100).toFixed(0)} %`],
      ['  → of which hashing + checks (client − wire)', fmtSeconds(m.discard - m.wire), '', '', `${(((m.discard - m.wire) / m.seq) * 100).toFixed(0)} %`],
      ['  → writing files (client → files − no disk)', fmtSeconds(m.seq - m.discard), '', '', `${(((m.seq - m.discard) / m.seq) * 100).toFixed(0)} %`],
    ]));
    console.log(`  target: our client ≥ 1.0× skopeo → best ${fmtSpeedup(m.skopeo, best)} ${verdict(m.skopeo / best >= 1.0)}`);
  } finally {
    await client?.close();
    await br.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const ociPullSection: Section = {
  name: 'oci',
  title: 'pull every blob of a multi-layer image: our OCI client vs skopeo copy (issue 3)',
  run: runOciPull,
};
