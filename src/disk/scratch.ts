/**
 * A scratch filesystem in the tail of a disk, reached through a loop device at an offset: room
 * for container storage on the disk an image is being installed to, instead of in memory.
 *
 * Why a loop device at an offset and not a partition: `bootc install to-disk --wipe` refuses a
 * disk that is mounted or has mounted children, runs `wipefs -a` on every child and on the
 * disk, and writes a new GPT. A loop device backed by the disk is neither a partition nor a
 * child in lsblk/sysfs, so none of that reaches it; `wipefs -a` on the disk erases only the
 * signatures libblkid finds at the disk's start and the backup GPT in its last sectors; bootc's
 * mkfs writes only its own partitions, which end before the scratch's offset.
 * @module
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError, describeError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { MiB } from '../io/sizes.ts';
import type { Logger } from '../log/index.ts';


export interface ScratchOptions {
  /** The whole disk (/dev/…); the scratch is `[offsetBytes, offsetBytes + sizeBytes)` of it. */
  disk: string;
  offsetBytes: number;
  sizeBytes: number;
  /**
   * Where the scratch's private directory is made (a new `bootc-scratch-*`, default /run): its
   * `mnt/` is the mountpoint, its `run/` podman's run root, which must stay in memory and
   * short (podman refuses one longer than 50 characters). Not under state_dir, whose
   * subdirectories a restarted agent removes recursively.
   */
  parentDir?: string | undefined;
  signal?: AbortSignal | undefined;
  log?: Logger | undefined;
}

export interface Scratch {
  /** The loop device. */
  device: string;
  mountpoint: string;
  /** Bind-mounted as /var/lib/containers; its `storage/` is the graph root. */
  containersDir: string;
  /** Temporary space (blob staging, /var/tmp of the install). */
  tmpDir: string;
  /** Run root and libpod's temporary directory: in memory, not on the scratch. */
  runDir: string;
  offsetBytes: number;
  sizeBytes: number;
  /**
   * Unmounts everything below the mountpoint (deepest first) and the scratch, erases its
   * signature and detaches the loop device. Idempotent: a second call returns the first's result.
   */
  teardown(): Promise<string[]>;
}

function assertDisk(path: string): void {
  if (!/^\/dev\/[A-Za-z0-9._/-]+$/.test(path) || path.includes('..')) {
    throw new AgentError('SCRATCH_FAILED', `Refusing a scratch area on "${path}": not a /dev path`);
  }
}

/** Mountpoints at or below `dir`, deepest first (from /proc/self/mountinfo). */
export async function mountsBelow(dir: string, mountinfo?: string): Promise<string[]> {
  const text = mountinfo ?? await readFile('/proc/self/mountinfo', 'utf8');
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const points = text.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => !!p).map(unescape);
  const below = [...new Set(points.filter((p) => p === dir || p.startsWith(`${dir}/`)))];
  return below.sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
}

/**
 * `losetup --find` at the offset, never a loop device whose name contains the disk's: bootc
 * refuses a disk when any mount source in PID 1's namespace *contains* its path (`/dev/loop1`
 * is "mounted" when `/dev/loop12` is), so such names are held while another is found, then let go.
 */
async function attachScratchLoop(runner: CommandRunner, options: ScratchOptions): Promise<string> {
  const held: string[] = [];
  try {
    for (let attempt = 0; attempt < 16; attempt++) {
      // Direct I/O: the scratch's filesystem caches its files already; a buffered loop device would
      // cache every byte again in the disk's page cache, charged to the memory of the deploy.
      const out = await runner.run('losetup', ['--find', '--show', '--direct-io=on', '--offset', String(options.offsetBytes), '--sizelimit', String(options.sizeBytes), options.disk], { signal: options.signal, timeoutMs: 60_000 });
      const device = out.stdout.trim();
      if (!/^\/dev\/loop\d+$/.test(device)) throw new AgentError('SCRATCH_FAILED', `losetup answered "${device.slice(0, 80)}" instead of a loop device`);
      if (!device.includes(options.disk)) return device;
      held.push(device);
    }
    throw new AgentError('SCRATCH_FAILED', `Every free loop device found (${held.join(', ')}) has a name containing ${options.disk}, which bootc would take for a mount of the disk`);
  } finally {
    for (const loop of held) await runner.run('losetup', ['-d', loop], { timeoutMs: 60_000 }).catch((err: unknown) => options.log?.warn({ err, loop }, 'could not detach a loop device'));
  }
}

// A clean-up goes on past a failed step: each step's label lands in `steps` or, with why, in `failures`.
function cleanupSteps() {
  const steps: string[] = [];
  const failures: string[] = [];
  const attempt = async (label: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
      steps.push(label);
    } catch (err) {
      failures.push(`${label}: ${describeError(toAgentError(err))}`);
    }
  };
  return { steps, failures, attempt };
}

/** Creates, formats (xfs) and mounts the scratch; on any failure nothing of it stays. */
export async function createScratch(runner: CommandRunner, options: ScratchOptions): Promise<Scratch> {
  assertDisk(options.disk);
  const { offsetBytes, sizeBytes, signal, log } = options;
  if (offsetBytes % MiB !== 0 || sizeBytes % MiB !== 0 || offsetBytes <= 0 || sizeBytes <= 0) {
    throw new AgentError('SCRATCH_FAILED', `Scratch offset ${offsetBytes} and size ${sizeBytes} must be positive multiples of 1 MiB`);
  }
  const parent = options.parentDir ?? '/run';
  await mkdir(parent, { recursive: true, mode: 0o700 });
  const base = await mkdtemp(join(parent, 'bootc-scratch-'));
  const mountpoint = join(base, 'mnt');
  const runDir = join(base, 'run');
  await mkdir(mountpoint, { mode: 0o700 });
  await mkdir(runDir, { mode: 0o700 });
  let device: string | undefined;
  let done: Promise<string[]> | undefined;
  const teardown = () => (done ??= (async () => {
    const { steps, failures, attempt } = cleanupSteps();
    for (const point of await mountsBelow(base)) {
      await attempt(`umount ${point}`, () => runner.run('umount', [point], { timeoutMs: 60_000 }));
    }
    if (device) {
      const loop = device;
      await attempt(`wipefs -a ${loop}`, () => runner.run('wipefs', ['-a', '-q', loop], { timeoutMs: 60_000 }));
      await attempt(`losetup -d ${loop}`, () => runner.run('losetup', ['-d', loop], { timeoutMs: 60_000 }));
    }
    // never a recursive rm over anything still mounted: the scratch must not be emptied file by file
    if (!(await mountsBelow(base)).length) await attempt(`rm -r ${base}`, () => rm(base, { recursive: true, force: true }));
    else failures.push(`${base} still has mounts`);
    if (failures.length) {
      log?.error({ failures, steps }, 'scratch teardown incomplete');
      throw new AgentError('SCRATCH_FAILED', `Removing the scratch area on ${options.disk} failed: ${failures.join('; ')}`, { details: { steps, failures } });
    }
    return steps;
  })());
  try {
    device = await attachScratchLoop(runner, options);
    // -K: no discard of the range (slow on large disks, and the space is erased on the way out anyway)
    await runner.run('mkfs.xfs', ['-f', '-q', '-K', '-L', 'agentscratch', device], { signal, timeoutMs: 600_000 });
    await runner.run('mount', [device, mountpoint], { signal, timeoutMs: 60_000 });
    const scratch: Scratch = {
      device, mountpoint, offsetBytes, sizeBytes, teardown, runDir,
      containersDir: join(mountpoint, 'containers'),
      tmpDir: join(mountpoint, 'tmp'),
    };
    await mkdir(join(scratch.containersDir, 'storage'), { recursive: true, mode: 0o700 });
    await mkdir(scratch.tmpDir, { mode: 0o1777 });
    log?.info({ device, offset: offsetBytes, size: sizeBytes, mountpoint }, 'scratch area mounted');
    return scratch;
  } catch (err) {
    await teardown().catch((e: unknown) => log?.error({ err: e }, 'scratch teardown after a failed set-up'));
    if (err instanceof AgentError) throw err;
    throw new AgentError('SCRATCH_FAILED', `Setting up the scratch area on ${options.disk} failed: ${describeError(toAgentError(err))}`, { cause: err, details: { offset: offsetBytes, size: sizeBytes } });
  }
}

/**
 * What an agent killed during a deploy in disk mode leaves of its scratch area: its private
 * directory `dir` (the scratch and podman's run root mounted below it), if one was recorded, and
 * the loop devices on `disk`. Unmounts deepest first, erases and detaches every loop device on
 * the disk (only a scratch puts one there), and removes the directory once nothing is mounted.
 * Never throws: returns what it did and what failed.
 */
export async function removeScratchLeftovers(runner: CommandRunner, disk: string, dir: string | undefined, log?: Logger): Promise<{ steps: string[]; failures: string[] }> {
  assertDisk(disk);
  const { steps, failures, attempt } = cleanupSteps();
  const bases = dir ? [dir] : [];
  for (const base of bases) {
    for (const point of await mountsBelow(base)) await attempt(`umount ${point}`, () => runner.run('umount', [point], { timeoutMs: 60_000 }));
  }
  const listed = await runner.run('losetup', ['--noheadings', '--output', 'NAME', '--associated', disk], { timeoutMs: 60_000 }).catch(() => ({ stdout: '' }));
  for (const loop of listed.stdout.split('\n').map((l) => l.trim()).filter((l) => /^\/dev\/loop\d+$/.test(l))) {
    await attempt(`wipefs -a ${loop}`, () => runner.run('wipefs', ['-a', '-q', loop], { timeoutMs: 60_000 }));
    await attempt(`losetup -d ${loop}`, () => runner.run('losetup', ['-d', loop], { timeoutMs: 60_000 }));
  }
  for (const base of bases) {
    if ((await mountsBelow(base)).length) failures.push(`${base} still has mounts`);
    else await attempt(`rm -r ${base}`, () => rm(base, { recursive: true, force: true }));
  }
  if (failures.length) log?.error({ failures, steps }, 'scratch leftovers not all removed');
  return { steps, failures };
}
