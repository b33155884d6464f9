/**
 * After an install from a scratch area on the target disk: the root partition bootc created
 * ends before where the scratch was; it is moved to end where the scratch ended (the start of
 * the config drive's reserve) and its filesystem grown (xfs and btrfs mounted, ext4 offline), so
 * the disk looks as if there had never been a scratch. A LUKS root (tpm2-luks) is left as it
 * is: its header and TPM binding are bootc's, and growing it means opening it here with a key
 * sealed to this machine's TPM.
 * @module
 */
import { mkdir, mkdtemp, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readPartitionTable, syncKernelPartitions, type TablePartition } from '../disk/index.ts';
import { AgentError, describeError, isAgentError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { MiB } from '../io/sizes.ts';

export interface RootGrowth {
  /** The root partition's size afterwards; null when it was left as bootc made it. */
  root_grown_to_mib: number | null;
  root_filesystem: string;
  /** Why it was not grown. */
  not_grown_because?: string;
}

const GROWABLE = ['xfs', 'ext4', 'btrfs'];

// The last partition by position: bootc puts root last.
function rootOf(partitions: readonly TablePartition[]): TablePartition | undefined {
  return [...partitions].sort((a, b) => b.start - a.start)[0];
}

// xfs and btrfs grow only while mounted.
function growArgs(fs: string, mountpoint: string): [string, string[]] {
  return fs === 'xfs' ? ['xfs_growfs', [mountpoint]] : ['btrfs', ['filesystem', 'resize', 'max', mountpoint]];
}

async function growFilesystem(runner: CommandRunner, fs: string, node: string, parentDir: string, signal: AbortSignal | undefined): Promise<void> {
  if (fs === 'ext4') {
    // Offline: online growth needs CAP_SYS_RESOURCE and the resize ioctl; resize2fs wants a
    // fresh check first (-p: fix only what is safe; 1 means it fixed something).
    await runner.run('e2fsck', ['-f', '-p', node], { signal, okExitCodes: [0, 1], timeoutMs: 600_000 });
    await runner.run('resize2fs', [node], { signal, timeoutMs: 600_000 });
    return;
  }
  await mkdir(parentDir, { recursive: true, mode: 0o700 });
  const mountpoint = await mkdtemp(join(parentDir, 'bootc-grow-'));
  try {
    await runner.run('mount', ['-t', fs, node, mountpoint], { signal, timeoutMs: 120_000 });
    try {
      const [file, args] = growArgs(fs, mountpoint);
      await runner.run(file, args, { signal, timeoutMs: 600_000 });
    } finally {
      await runner.run('umount', [mountpoint], { timeoutMs: 120_000 });
    }
  } finally {
    await rmdir(mountpoint).catch(() => undefined);
  }
}

/**
 * Grows the root partition of `device` to end at `endBytes` (exclusive, sector aligned) and its
 * filesystem with it. Partition UUID, type, name and attributes stay (sfdisk -N changes the size only).
 */
export async function growRoot(runner: CommandRunner, device: string, endBytes: number, options: { parentDir: string; signal?: AbortSignal | undefined; log?: Logger | undefined }): Promise<RootGrowth> {
  const { signal, log } = options;
  try {
    const table = await readPartitionTable(runner, device, { signal, code: 'ROOT_GROW_FAILED', context: 'after install' });
    const root = rootOf(table.partitions);
    if (!root) throw new AgentError('ROOT_GROW_FAILED', `${device} has no partition after the install`);
    const endSector = Math.floor(endBytes / table.sectorSize);
    if (root.start + root.size > endSector) {
      throw new AgentError('ROOT_GROW_FAILED', `The root partition ${root.node} ends at sector ${root.start + root.size}, beyond where the scratch area ended (${endSector})`);
    }
    const probe = await runner.run('blkid', ['-p', '-o', 'value', '-s', 'TYPE', root.node], { signal, okExitCodes: [0, 2], timeoutMs: 60_000 });
    const fs = probe.stdout.trim();
    if (fs === 'crypto_LUKS') {
      return { root_grown_to_mib: null, root_filesystem: fs, not_grown_because: 'the root is a LUKS volume (tpm2-luks): the freed space stays after it, for the installed system to grow' };
    }
    if (!GROWABLE.includes(fs)) {
      return { root_grown_to_mib: null, root_filesystem: fs, not_grown_because: `the root filesystem is "${fs}", not one of ${GROWABLE.join(', ')}` };
    }
    const size = endSector - root.start;
    await runner.run('sfdisk', ['--no-reread', '--no-tell-kernel', '--wipe', 'never', '--wipe-partitions', 'never', '-N', String(root.number), device], { signal, input: `${root.start},${size}\n`, timeoutMs: 60_000 });
    await syncKernelPartitions(runner, device, { mode: 'strict', code: 'ROOT_GROW_FAILED', context: 'after growing root', signal, log });
    await growFilesystem(runner, fs, root.node, options.parentDir, signal);
    const grownMiB = Math.floor((size * table.sectorSize) / MiB);
    log?.info({ device, partition: root.node, filesystem: fs, root_mib: grownMiB }, 'root grown over the scratch area');
    return { root_grown_to_mib: grownMiB, root_filesystem: fs };
  } catch (err) {
    if (isAgentError(err) && (err.code === 'ROOT_GROW_FAILED' || err.code === 'CANCELLED')) throw err;
    throw new AgentError('ROOT_GROW_FAILED', `Growing the root partition of ${device} failed: ${describeError(toAgentError(err))}`, { cause: err });
  }
}
