/**
 * Issue 14's honest memory bound: the deploy's podman processes — the pull, the probe and install
 * containers (bootc inside them) — run in a memory cgroup of their own whose limit is smaller
 * than the image's unpacked size. With the container storage on the target disk the deploy
 * succeeds; with it in memory (a tmpfs, as in the ramdisk) the same image cannot be pulled, and
 * the step fails with a typed error, the disk as it was, nothing left behind.
 *
 * What is in the cgroup (./memory-cgroup.ts): every `podman` the step runs, and every container
 * it starts (`--cgroup-parent`), so conmon, runc and bootc's copy are charged too. The agent
 * itself (this test process) is not: its own memory is bounded separately (issue 14's RSS target).
 *
 * Why it is honest and not OOM-killed by page cache: a memory cgroup is charged for the page
 * cache its processes fill, including dirty pages the disk has not taken yet. On a real machine
 * the target is a block device and the scratch is a loop device over it. Here the "disk" is a
 * loop device over a sparse file, whose own page cache would be charged a second time for every
 * byte written through it (the loop driver charges its writes to the cgroup that issued them);
 * so the disk's loop device is attached with `--direct-io=on`, as a disk has no page cache
 * below it, and the step's scratch loop device uses direct I/O too (src/disk/scratch.ts). What
 * stays charged is what a small machine would hold: podman's and bootc's memory, and the page
 * cache of the files they write, which the kernel writes back and reclaims under the limit.
 *
 * Needs root, a memory cgroup controller (v2, or v1's memory hierarchy), podman, the stand-in
 * image and a registry; skipped with the reason otherwise. Only this file's cgroup, loop devices,
 * mounts, containers and registry are touched, and removed in `after` even when a test fails.
 */
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { Progress, StepContext } from '../../src/commands/index.ts';
import { writeConfigDrive } from '../../src/configdrive/index.ts';
import { createBootcStep } from '../../src/bootc/register.ts';
import type { BootcStepDeps } from '../../src/bootc/deps.ts';
import { isAgentError, type AgentError } from '../../src/errors.ts';
import { createExecaRunner, type CommandRunner } from '../../src/exec/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { createOciClient, DEFAULT_CERTS_DIRS } from '../../src/oci/index.ts';
import { buildIso } from '../configdrive/fixtures.ts';
import type { TestRegistry } from '../helpers/registry.ts';
import { buildStandinImages, buildStandinVariant, pushStandin, standinUnavailable, startStandinRegistry, STANDIN_PULL_SECRET } from '../helpers/standin-image.ts';
import { layMarkerTable, partitionLines } from '../helpers/loop.ts';
import { probe, runCleanups, sh, toolMissing } from '../helpers/tools.ts';
import { createMemoryCgroup, memoryCgroupUnavailable, podmanInCgroup, type MemoryCgroup } from './memory-cgroup.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
// The image: the stand-in plus this much incompressible data; the cgroup's limit is well below it.
const FILLER_BYTES = 384 * MiB;
const LIMIT_BYTES = 256 * MiB;

function skipReason(): string | undefined {
  return standinUnavailable() ?? toolMissing('sgdisk', 'losetup', 'partx', 'blkid', 'mount', 'umount') ?? memoryCgroupUnavailable()
    ?? (process.arch !== 'x64' ? 'the stand-in layout is defined for x86_64' : undefined);
}

function loopsOn(dev: string): string[] {
  return probe('losetup', ['--noheadings', '--output', 'NAME', '--associated', dev]).stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

function scratchMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith('/run/bootc-scratch-'));
}

interface Outcome {
  result?: Record<string, unknown>;
  error?: AgentError;
  progress: Progress[];
  containers: string[];
  commands: string[][];
  ms: number;
}

describe('a deploy under a memory cgroup smaller than the image (issue 14)', { concurrency: false }, () => {
  const reason = skipReason();
  if (reason) console.log(`memory-bound tests skipped: ${reason}`);
  const realRunner = createExecaRunner();
  let dir = '';
  let registry: TestRegistry | undefined;
  let disk: string | undefined;
  let cgroup: MemoryCgroup | undefined;
  let imageRef = '';
  let unpackedBytes = 0;
  let storageConf = '';
  let memoryStore = '';
  let configdrive = '';
  const cleanups: (() => Promise<unknown> | unknown)[] = [];

  before(async () => {
    if (reason) return;
    // Not under /tmp: the stand-in's canary scan reads /tmp, and the memory-mode store is here.
    dir = await mkdtemp(join('/var/lib', 'bootc-memtest-'));
    await buildStandinImages();
    const overlay = await mkdtemp(join('/var/lib', 'bootc-memtest-filler-'));
    cleanups.push(() => rm(overlay, { recursive: true, force: true }));
    await mkdir(join(overlay, 'usr/share/bootc-memtest'), { recursive: true });
    // incompressible and the same on every run (fixed key), so the variant is built once
    const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16, 5));
    for (let i = 0; i < FILLER_BYTES / (64 * MiB); i++) await writeFile(join(overlay, `usr/share/bootc-memtest/data-${i}.bin`), cipher.update(Buffer.alloc(64 * MiB)));
    const local = await buildStandinVariant({ overlayDir: overlay, name: 'localhost/bootc-standin-memtest' });
    unpackedBytes = Number(sh('podman', ['image', 'inspect', '--format', '{{.Size}}', local]).trim());
    registry = await startStandinRegistry({ auth: 'basic' });
    cleanups.push(() => registry?.stop());
    cleanups.push(await registry.installCaForPodman());
    imageRef = (await pushStandin(registry, 'os/memtest', 'latest', local)).reference;
    // the disk: a loop device with direct I/O, like a disk, with no page cache of its own below it
    const file = join(dir, 'disk.img');
    await writeFile(file, '');
    await truncate(file, 10 * GiB);
    disk = sh('losetup', ['--find', '--show', '--direct-io=on', file]).trim();
    cleanups.push(() => { probe('partx', ['-d', '--', disk!]); probe('losetup', ['-d', disk!]); });
    // the memory-mode store: a tmpfs as in the ramdisk, big enough that only memory can refuse
    memoryStore = join(dir, 'store');
    await mkdir(join(memoryStore, 'graph'), { recursive: true });
    sh('mount', ['-t', 'tmpfs', '-o', 'size=4G,mode=0700', 'tmpfs', join(memoryStore, 'graph')]);
    cleanups.push(() => probe('umount', [join(memoryStore, 'graph')]));
    storageConf = join(memoryStore, 'storage.conf');
    await writeFile(storageConf, `[storage]\ndriver = "overlay"\ngraphroot = "${join(memoryStore, 'graph')}"\nrunroot = "${join(memoryStore, 'run')}"\n`);
    configdrive = gzipSync(buildIso(dir)).toString('base64');
    cgroup = createMemoryCgroup('memtest', LIMIT_BYTES);
    cleanups.push(() => cgroup?.remove());
  });

  after(async () => {
    await runCleanups(cleanups);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function runStep(instanceInfo: Record<string, unknown>, deps: Partial<BootcStepDeps> = {}): Promise<Outcome> {
    const outcome: Outcome = { progress: [], containers: [], commands: [], ms: 0 };
    const limited = podmanInCgroup(realRunner, cgroup!, { CONTAINERS_STORAGE_CONF: storageConf });
    const runner: CommandRunner = {
      run(file, args, opts) {
        outcome.commands.push([file, ...args]);
        const i = args.indexOf('--name');
        if (file === 'podman' && i >= 0 && args[i + 1]) outcome.containers.push(args[i + 1]!);
        return limited.run(file, args, opts);
      },
    };
    const log = createLogger({ level: 'warn', stream: { write: () => undefined } });
    const step = createBootcStep({
      runner,
      config: { disable_bootc_deploy: false, disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, state_dir: join(dir, 'state') },
      oci: createOciClient({ log, certsDirs: [...DEFAULT_CERTS_DIRS, registry!.certsDir] }),
      writeConfigDrive: async (device, value, o) => ({ ...(await writeConfigDrive(device, value, { runner, ...o })) }),
      recordPartitionUuids: () => undefined,
      retryDelayMs: 500,
      storagePath: join(memoryStore, 'graph'),
      ...deps,
    });
    const ctx: StepContext = {
      signal: new AbortController().signal, log,
      node: { uuid: '6a4f3c3e-1d1b-4c55-9d5e-1f0b7f2f9a10', properties: { root_device: { name: disk! } }, instance_info: instanceInfo },
      ports: [], reportProgress: (p) => { outcome.progress.push(p); },
    };
    cgroup!.reset();
    const started = performance.now();
    try {
      outcome.result = await step.run({ image_source: `oci://${imageRef}`, oci_pull_secret: STANDIN_PULL_SECRET, configdrive }, ctx) as Record<string, unknown>;
    } catch (err) {
      assert.ok(isAgentError(err), `not an AgentError: ${String(err)}`);
      outcome.error = err;
    }
    outcome.ms = performance.now() - started;
    return outcome;
  }

  function assertNothingLeft(outcome: Outcome): void {
    for (const name of outcome.containers) assert.equal(probe('podman', ['container', 'exists', name]).status, 1, `container ${name} was left behind`);
    assert.deepEqual(loopsOn(disk!), [], 'a loop device on the disk was left behind');
    assert.deepEqual(scratchMounts(), [], 'a scratch mount was left behind');
    assert.equal(readFileSync(cgroup!.procsFile, 'utf8').trim(), '', 'a podman process is still running in the cgroup');
  }

  test('the bound is real: the image unpacked is larger than the cgroup\'s limit', (t) => {
    if (reason) return t.skip(reason);
    assert.ok(unpackedBytes > LIMIT_BYTES * 1.4, `image ${unpackedBytes} bytes, limit ${LIMIT_BYTES}`);
  });

  test('disk storage: the image deploys within the limit, root grown over the scratch, the config drive last', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!);
    // auto, told the memory it may use is the cgroup's limit: it must choose the disk
    const outcome = await runStep({}, { memAvailable: async () => LIMIT_BYTES });
    const { peakBytes, oomKills } = cgroup!.peak();
    t.diagnostic(`cgroup v${cgroup!.version}: limit ${LIMIT_BYTES / MiB} MiB, image ${Math.round(unpackedBytes / MiB)} MiB unpacked, peak charge ${peakBytes === undefined ? '?' : Math.round(peakBytes / MiB)} MiB (page cache included), ${oomKills} OOM kills; ${Math.round(outcome.ms / 1000)} s`);
    assert.equal(outcome.error, undefined, outcome.error && `${outcome.error.code}: ${outcome.error.message} ${JSON.stringify(outcome.error.details).slice(0, 1500)}`);
    const cs = outcome.result!.container_storage as { mode: string; chosen_by: string; scratch_offset: number; scratch_bytes: number; installed_root_mib: number; root_grown_to_mib: number };
    assert.equal(cs.mode, 'disk');
    assert.equal(cs.chosen_by, 'auto');
    assert.ok(cs.root_grown_to_mib >= cs.installed_root_mib + cs.scratch_bytes / MiB, JSON.stringify(cs));
    // every podman ran in the cgroup, every container under it
    const podmans = outcome.commands.filter((c) => c[0] === 'podman');
    assert.ok(podmans.some((c) => c.includes('pull')), 'no pull');
    assert.ok(podmans.some((c) => c.includes('install')), 'no install');
    assert.ok(peakBytes === undefined || peakBytes > 32 * MiB, `the cgroup was charged only ${peakBytes} bytes: the deploy did not run in it`);
    assert.equal(oomKills, 0, 'the OOM killer killed a process of the deploy');
    const lines = partitionLines(disk!);
    assert.match(lines.at(-1)!, /config-2$/, lines.join('\n'));
    const parts = outcome.result!.partitions as { size_bytes: number; start_bytes: number }[];
    assert.equal(parts[2]!.start_bytes + parts[2]!.size_bytes, cs.scratch_offset + cs.scratch_bytes);
    assertNothingLeft(outcome);
  });

  test('memory storage: the same image cannot be pulled within the limit; a typed error, the disk as it was, nothing left', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!);
    // the host's real memory: the admission lets it in, and the cgroup's limit is what refuses it
    const outcome = await runStep({ bootc_container_storage: 'memory' });
    const { peakBytes, oomKills } = cgroup!.peak();
    t.diagnostic(`cgroup v${cgroup!.version}: peak charge ${peakBytes === undefined ? '?' : Math.round(peakBytes / MiB)} MiB, ${oomKills} OOM kills; ${outcome.error?.code}: …${outcome.error?.message.slice(-400)}`);
    assert.ok(outcome.error, 'memory storage deployed an image larger than the memory it had');
    assert.equal(outcome.error.details.phase, 'pull', `${outcome.error.code}: ${outcome.error.message}`);
    assert.match(outcome.error.code, /^[A-Z][A-Z_]+$/);
    // the limit is what stopped it: the pull filled the cgroup up to it (the OOM killer, or an
    // allocation refused, ends podman)
    assert.ok(oomKills > 0 || (peakBytes !== undefined && peakBytes >= LIMIT_BYTES * 0.95), `peak ${peakBytes}, ${oomKills} OOM kills: the limit did not stop the pull`);
    // a pull failure comes before anything is written: the disk is left exactly as it was
    assert.equal(partitionLines(disk!).length, 2, 'the marker table is gone');
    assertNothingLeft(outcome);
  });
});
