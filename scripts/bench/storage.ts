/**
 * Issue 14: what a bootc deploy costs in memory against the image's size, with podman's
 * container storage in memory (a tmpfs, as in the ramdisk) and on the target disk (the scratch
 * area), and the time each takes. The agent's step (real runner, real OCI client) deploys the
 * stand-in plus N of incompressible data from a TLS registry onto a loop device; every podman it
 * runs, and every container, is in a memory cgroup of the bench's own (test/bootc/memory-cgroup.ts).
 *
 * Peak memory: the cgroup's anonymous memory plus shmem (tmpfs: the in-memory storage), sampled
 * every 100 ms — what the machine cannot give back while the deploy runs. The cgroup's peak charge
 * with page cache is shown beside it (page cache is written back and dropped under pressure; a
 * machine with little RAM keeps less of it). The agent's own process is not in the cgroup (its
 * RSS is issue 14's separate target). The disk's loop device uses direct I/O, as a disk has no
 * page cache below it.
 *
 *   BENCH_STORAGE_SIZES=256M,1G,4G   the data added to the stand-in (default 256M,1G)
 *   BENCH_STORAGE_SCRATCH_IO=buffered  the scratch's loop device without direct I/O (the agent
 *                                      uses direct I/O; this shows what that choice costs or saves)
 * @module
 */
import { createCipheriv } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  deferCleanup, fmtBytes, fmtSeconds, moduleExists, parseSize, requireRoot, requireTools, run, Skip, table, verdict,
  type BenchContext, type Section,
} from './common.ts';

const ROOT_DIR = '/var/lib/bootc-agent-bench';
const REPO = 'bench/storage';
// Ironic's documentation: "a 600MB container image may require upwards of 10GB of RAM".
const IRONIC_RAM_PER_COMPRESSED_BYTE = 10e9 / 600e6;
const PEAK_TARGET = 2 ** 30;
const TIME_TARGET = 1.2;

type Standin = typeof import('../../test/helpers/standin-image.ts');
type Cgroups = typeof import('../../test/bootc/memory-cgroup.ts');

interface Measurement {
  mode: 'memory' | 'disk';
  seconds: number;
  unreclaimablePeak: number;
  chargedPeak: number | undefined;
  error?: string;
}

/** The stand-in plus `bytes` of AES-CTR output under a fixed key: incompressible, the same every run, built once. */
async function imageWithData(standin: Standin, bytes: number): Promise<string> {
  await mkdir(ROOT_DIR, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(ROOT_DIR, 'storage-data-'));
  try {
    await mkdir(join(dir, 'usr/share/bootc-agent-bench'), { recursive: true });
    const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 11), Buffer.alloc(16, 13));
    const chunk = 64 * 2 ** 20;
    for (let done = 0, i = 0; done < bytes; done += chunk, i++) {
      await writeFile(join(dir, `usr/share/bootc-agent-bench/data-${String(i).padStart(4, '0')}.bin`), cipher.update(Buffer.alloc(Math.min(chunk, bytes - done))));
    }
    return await standin.buildStandinVariant({ overlayDir: dir, name: 'localhost/bootc-standin-storage-bench' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A fresh tmpfs as podman's default storage (the memory mode's store), and the storage.conf naming it. */
async function memoryStore(): Promise<{ graph: string; conf: string; remove(): Promise<void> }> {
  await mkdir(ROOT_DIR, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(ROOT_DIR, 'store-'));
  const graph = join(dir, 'graph');
  await mkdir(graph);
  await run('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=75%', 'tmpfs', graph]);
  const conf = join(dir, 'storage.conf');
  await writeFile(conf, `[storage]\ndriver = "overlay"\ngraphroot = "${graph}"\nrunroot = "${join(dir, 'run')}"\n`);
  const remove = deferCleanup(async () => {
    await run('umount', ['-R', graph], { allowFail: true });
    await rm(dir, { recursive: true, force: true });
  });
  return { graph, conf, remove };
}

async function directLoop(dir: string, bytes: number): Promise<{ device: string; detach(): Promise<void> }> {
  const backing = join(dir, 'disk.img');
  const handle = await open(backing, 'w');
  await handle.truncate(bytes);
  await handle.close();
  const device = (await run('losetup', ['--find', '--show', '--direct-io=on', '--', backing])).stdout.trim();
  const detach = deferCleanup(async () => {
    await run('partx', ['-d', '--', device], { allowFail: true });
    await run('losetup', ['--detach', device], { allowFail: true });
  });
  return { device, detach };
}

type Runner = import('../../src/exec/index.ts').CommandRunner;

// BENCH_STORAGE_SCRATCH_IO=buffered: the step's losetup without --direct-io=on.
function scratchIo(base: Runner): Runner {
  if (process.env.BENCH_STORAGE_SCRATCH_IO !== 'buffered') return base;
  return { run: (file, args, opts) => base.run(file, file === 'losetup' ? args.filter((a) => a !== '--direct-io=on') : args, opts) };
}

/** One deploy in `mode`, podman in a fresh cgroup sampled every 100 ms. */
async function deployOnce(ctx: BenchContext, env: { standin: Standin; cgroups: Cgroups; registryHost: string; certsDir: string; disk: string; mode: 'memory' | 'disk' }): Promise<Measurement> {
  const { createBootcStep } = await import('../../src/bootc/register.ts');
  const { createExecaRunner } = await import('../../src/exec/index.ts');
  const { createSilentLogger } = await import('../../src/log/index.ts');
  const { createOciClient, DEFAULT_CERTS_DIRS } = await import('../../src/oci/index.ts');
  const store = await memoryStore();
  const cg = env.cgroups.createMemoryCgroup('storage-bench');
  const oci = createOciClient({ log: createSilentLogger(), certsDirs: [...DEFAULT_CERTS_DIRS, env.certsDir] });
  let unreclaimablePeak = 0;
  const timer = setInterval(() => { unreclaimablePeak = Math.max(unreclaimablePeak, cg.unreclaimableBytes()); }, 100);
  const started = performance.now();
  try {
    const step = createBootcStep({
      runner: scratchIo(env.cgroups.podmanInCgroup(createExecaRunner(), cg, { CONTAINERS_STORAGE_CONF: store.conf })),
      oci,
      config: { disable_bootc_deploy: false, disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, state_dir: join(ctx.tmp, 'storage-state') },
      writeConfigDrive: async () => ({}),
      recordPartitionUuids: () => undefined,
      storagePath: store.graph,
    });
    await step.run({ image_source: `oci://${env.registryHost}/${REPO}:latest`, oci_pull_secret: env.standin.STANDIN_PULL_SECRET }, {
      signal: new AbortController().signal, log: createSilentLogger(),
      node: { uuid: '0d3c9a51-3f55-4a3e-8f0e-6e8f3f1d2b7c', properties: { root_device: { name: env.disk } }, instance_info: { bootc_container_storage: env.mode } },
      ports: [], reportProgress: () => undefined,
    } as Parameters<typeof step.run>[1]);
    return { mode: env.mode, seconds: (performance.now() - started) / 1000, unreclaimablePeak, chargedPeak: cg.peak().peakBytes };
  } catch (err) {
    return { mode: env.mode, seconds: (performance.now() - started) / 1000, unreclaimablePeak, chargedPeak: cg.peak().peakBytes, error: String((err as Error).message).slice(0, 200) };
  } finally {
    clearInterval(timer);
    await oci.close();
    await store.remove();
    try {
      cg.remove();
    } catch (err) {
      console.log(`  note: ${(err as Error).message}`);
    }
  }
}

async function compressedSize(reference: string, registry: { certsDir: string; username: string; password: string }): Promise<number> {
  const { createOciClient, DEFAULT_CERTS_DIRS } = await import('../../src/oci/index.ts');
  const oci = createOciClient({ certsDirs: [...DEFAULT_CERTS_DIRS, registry.certsDir] });
  try {
    return (await oci.inspectImage(reference, { credentials: { type: 'basic', username: registry.username, password: registry.password } })).totalCompressedSize;
  } finally {
    await oci.close();
  }
}

async function runStorage(ctx: BenchContext): Promise<void> {
  requireRoot('rootful podman, loop devices and a memory cgroup');
  for (const m of ['test/helpers/standin-image.ts', 'test/bootc/memory-cgroup.ts', 'src/bootc/register.ts']) if (!moduleExists(m)) throw new Skip(`${m} does not exist`);
  if (process.arch !== 'x64') throw new Skip('the stand-in layout is defined for x86_64');
  requireTools('podman', 'skopeo', 'losetup', 'partx', 'mkfs.xfs');
  const standin: Standin = await import('../../test/helpers/standin-image.ts');
  const cgroups: Cgroups = await import('../../test/bootc/memory-cgroup.ts');
  const why = standin.standinUnavailable() ?? cgroups.memoryCgroupUnavailable();
  if (why) throw new Skip(why);
  const sizes = (process.env.BENCH_STORAGE_SIZES ?? '256M,1G').split(',').map((s) => parseSize(s));
  await standin.buildStandinImages({ log: ctx.log });
  const registry = await standin.startStandinRegistry({ auth: 'basic' });
  const stopRegistry = deferCleanup(() => registry.stop());
  const removeCa = deferCleanup(await registry.installCaForPodman());
  const rows: (string | undefined)[][] = [];
  const verdicts: string[] = [];
  const diskPeaks: number[] = [];
  try {
    for (const size of sizes) {
      ctx.log(`storage: building the stand-in + ${fmtBytes(size)}`);
      const local = await imageWithData(standin, size);
      const unpacked = Number((await run('podman', ['image', 'inspect', '--format', '{{.Size}}', local])).stdout.trim());
      const pushed = await standin.pushStandin(registry, REPO, 'latest', local);
      const compressed = await compressedSize(pushed.reference, registry);
      const byMode: Measurement[] = [];
      // the disk: room for the scratch (from the agent's 3× estimate of the unpacked size) and the root
      const diskBytes = Math.ceil((4.4 * compressed + unpacked + 6 * 2 ** 30) / 2 ** 30) * 2 ** 30;
      await mkdir(ROOT_DIR, { recursive: true, mode: 0o700 });
      const dir = await mkdtemp(join(ROOT_DIR, 'storage-disk-'));
      const loop = await directLoop(dir, diskBytes);
      try {
        for (const mode of ['memory', 'disk'] as const) {
          ctx.log(`storage: ${fmtBytes(unpacked)} image, ${mode}`);
          await run('partx', ['-d', '--', loop.device], { allowFail: true });
          await run('sync', []);
          byMode.push(await deployOnce(ctx, { standin, cgroups, registryHost: registry.host, certsDir: registry.certsDir, disk: loop.device, mode }));
        }
      } finally {
        await loop.detach();
        await rm(dir, { recursive: true, force: true });
      }
      const [mem, disk] = byMode as [Measurement, Measurement];
      diskPeaks.push(disk.unreclaimablePeak);
      for (const m of byMode) {
        rows.push([fmtBytes(unpacked), fmtBytes(compressed), m.mode, m.error ? `failed: ${m.error}` : fmtSeconds(m.seconds), fmtBytes(m.unreclaimablePeak), m.chargedPeak === undefined ? 'n/a' : fmtBytes(m.chargedPeak),
          m.mode === 'memory' ? fmtBytes(compressed * IRONIC_RAM_PER_COMPRESSED_BYTE) : '']);
      }
      if (!mem.error && !disk.error) verdicts.push(`${fmtBytes(unpacked)}: disk ${(disk.seconds / mem.seconds).toFixed(2)}× memory's time ${verdict(disk.seconds <= mem.seconds * TIME_TARGET)}`);
    }
  } finally {
    await removeCa();
    await stopRegistry();
  }
  console.log(`  scratch loop device: ${process.env.BENCH_STORAGE_SCRATCH_IO === 'buffered' ? 'buffered (BENCH_STORAGE_SCRATCH_IO=buffered)' : 'direct I/O, as the agent sets it up'}`);
  console.log(`  every podman of the deploy and its containers in a memory cgroup; peak = anon + shmem (tmpfs) sampled every 100 ms; charged = the cgroup's peak with page cache`);
  console.log(table(['image unpacked', 'compressed', 'storage', 'deploy time', 'peak memory', 'charged incl. cache', 'Ironic\'s rule (10 GB per 600 MB)'], rows));
  const spreadPeak = Math.max(...diskPeaks) - Math.min(...diskPeaks);
  console.log(`  target: disk-mode peak ≤ ${fmtBytes(PEAK_TARGET)} and independent of the image size → largest ${fmtBytes(Math.max(...diskPeaks))}, spread over the sizes ${fmtBytes(spreadPeak)} ${verdict(Math.max(...diskPeaks) <= PEAK_TARGET)}`);
  console.log(`  target: disk-mode time ≤ ${TIME_TARGET}× memory mode → ${verdicts.join('; ') || 'n/a'}`);
}

export const storageSection: Section = {
  name: 'storage',
  title: 'deploy peak memory and time vs image size: container storage in memory and on the disk (issue 14)',
  run: runStorage,
};
