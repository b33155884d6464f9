/**
 * Finding or creating the `config-2` partition at the end of a GPT disk, as IPA's
 * `create_config_drive_partition` does after `bootc install to-disk`, then making the kernel's
 * partitions match the table (there may be no udev) and waiting for the node.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { realpath, stat } from 'node:fs/promises';
import {
  defaultSleep, partitionBytes, partitionNodePath, pause, readPartitionTable, syncKernelPartitions,
  type KernelEnvironment, type PartitionTable, type Sleep, type TablePartition,
} from '../disk/index.ts';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { MiB } from '../io/sizes.ts';
import type { Logger } from '../log/index.ts';
import { isConfigDriveLabel } from './probe.ts';
import { backupHeaderMisplaced, parseBlkidExport, planTailPartition } from './table.ts';

/** IPA's MAX_CONFIG_DRIVE_SIZE_MB: the partition made for the config drive. */
export const CONFIG_DRIVE_PARTITION_BYTES = 64 * MiB;
const LINUX_FS_TYPE = '8300';

export type { Sleep } from '../disk/index.ts';

export interface PartitionDeps extends KernelEnvironment {
  runner: CommandRunner;
  signal?: AbortSignal | undefined;
  log: Logger;
  /** Injected in tests so they do not sleep. */
  sleep?: Sleep | undefined;
  /** Whether a block device node exists (default: stat). */
  exists?: ((path: string) => Promise<boolean>) | undefined;
  /** Node wait: attempts × delay (IPA: 15 × 1 s). */
  waitAttempts?: number | undefined;
  waitDelayMs?: number | undefined;
}

export interface ConfigDrivePartition {
  /** The disk, with symlinks resolved. */
  device: string;
  /** The partition's node, e.g. /dev/sda4 or /dev/nvme0n1p4. */
  path: string;
  number: number;
  partuuid: string | null;
  /** Offset and size in bytes. */
  start: number;
  size: number;
  /** Logical sector size of the disk. */
  sectorSize: number;
  /** false when an existing `config-2` partition is reused. */
  created: boolean;
}

async function blockNodeExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isBlockDevice();
  } catch {
    return false;
  }
}

// Failures of the tools keep argv and stderr in details; cancellation passes through.
function failure(code: 'PARTITION_TABLE_INVALID' | 'CONFIGDRIVE_WRITE_FAILED', message: string, err: unknown): unknown {
  if (isAgentError(err) && (err.code === 'CANCELLED' || err.code === 'COMMAND_NOT_FOUND' || err.code === code)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new AgentError(code, `${message}: ${reason}`, { cause: err, details: isAgentError(err) ? err.details : {} });
}

function readTable(device: string, deps: PartitionDeps): Promise<PartitionTable> {
  return readPartitionTable(deps.runner, device, { signal: deps.signal, code: 'PARTITION_TABLE_INVALID', context: '(bootc should have written a GPT)' });
}

// The fs label (iso9660 `config-2`, vfat `CONFIG-2`), probed on the node when the kernel
// has it, else at the partition's offset on the disk; blkid exits 2 when it finds nothing.
async function filesystemLabel(device: string, table: PartitionTable, part: TablePartition, deps: PartitionDeps): Promise<string | null> {
  const node = partitionNodePath(device, part.number);
  const { start, size } = partitionBytes(table, part);
  const target = (await (deps.exists ?? blockNodeExists)(node)) ? [node] : ['-O', String(start), '-S', String(size), device];
  try {
    const { stdout } = await deps.runner.run('blkid', ['-p', '-o', 'export', '--', ...target], { signal: deps.signal, okExitCodes: [0, 2] });
    return parseBlkidExport(stdout).LABEL ?? null;
  } catch (err) {
    if (isAgentError(err) && (err.code === 'CANCELLED' || err.code === 'COMMAND_NOT_FOUND')) throw err;
    deps.log.warn({ err, partition: node }, 'could not probe the partition for a filesystem label');
    return null;
  }
}

async function findConfigDrives(device: string, table: PartitionTable, deps: PartitionDeps): Promise<TablePartition[]> {
  const found: TablePartition[] = [];
  for (const part of table.partitions) {
    const label = await filesystemLabel(device, table, part, deps);
    if (isConfigDriveLabel(part.name) || isConfigDriveLabel(label)) found.push(part);
  }
  return found;
}

// A disk copied onto a larger one (or a grown virtual disk) keeps its backup GPT in the middle;
// sgdisk -e moves it to the end so the free tail becomes usable (IPA's fix_gpt_partition).
async function fixBackupHeader(device: string, deps: PartitionDeps): Promise<boolean> {
  const { stdout, stderr } = await deps.runner.run('sgdisk', ['-v', '--', device], { signal: deps.signal });
  if (!backupHeaderMisplaced(`${stdout}\n${stderr}`)) return false;
  deps.log.info({ device }, 'the backup GPT is not at the end of the disk, moving it (sgdisk -e)');
  await deps.runner.run('sgdisk', ['-e', '--', device], { signal: deps.signal });
  return true;
}

// The kernel here may have no partition-table parser and no udev. A stale node of the same
// number (an older table) would send the config drive into another partition: the kernel's
// partitions must match the table (strict) before the node is used.
async function waitForNode(device: string, table: PartitionTable, path: string, deps: PartitionDeps): Promise<void> {
  await syncKernelPartitions(deps.runner, device, {
    mode: 'strict', code: 'CONFIGDRIVE_WRITE_FAILED', table,
    signal: deps.signal, log: deps.log, sysRoot: deps.sysRoot, udev: deps.udev, sleep: deps.sleep,
  });
  const exists = deps.exists ?? blockNodeExists;
  const attempts = deps.waitAttempts ?? 15;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (await exists(path)) return;
    if (attempt < attempts) await pause(deps.sleep ?? defaultSleep, deps.waitDelayMs ?? 1000, deps.signal, 'Waiting for the config drive partition');
  }
  throw new AgentError('CONFIGDRIVE_WRITE_FAILED', `The config drive partition ${path} did not appear after ${attempts} attempts`, {
    details: { device, partition: path, attempts },
  });
}

function describe(device: string, table: PartitionTable, part: TablePartition, created: boolean): ConfigDrivePartition {
  return {
    device,
    path: partitionNodePath(device, part.number),
    number: part.number,
    partuuid: part.partuuid,
    ...partitionBytes(table, part),
    sectorSize: table.sectorSize,
    created,
  };
}

/**
 * Reuse the disk's `config-2` partition (GPT name or filesystem label, case-insensitive) or
 * create a 64 MiB one ending at the disk's last usable sector, and wait for its node.
 * @example
 * const part = await ensureConfigDrivePartition('/dev/sda', drive.size, { runner, signal, log });
 * // → { path: '/dev/sda4', number: 4, partuuid: '…', start, size, created: true, … }
 */
export async function ensureConfigDrivePartition(device: string, sizeBytes: number, deps: PartitionDeps): Promise<ConfigDrivePartition> {
  const disk = await realpath(device).catch(() => device);
  let table = await readTable(disk, deps);
  if (table.label !== 'gpt') {
    throw new AgentError('PARTITION_TABLE_INVALID',
      `${disk} has a "${table.label}" partition table; only GPT is supported for the config drive (bootc always writes GPT)`,
      { details: { device: disk, table: table.label } });
  }
  const existing = await findConfigDrives(disk, table, deps);
  if (existing.length > 1) {
    const nodes = existing.map((p) => partitionNodePath(disk, p.number));
    throw new AgentError('PARTITION_TABLE_INVALID', `${disk} has ${existing.length} partitions labelled config-2 (${nodes.join(', ')}); expected at most one`, {
      details: { device: disk, partitions: nodes },
    });
  }
  if (existing[0]) {
    const found = describe(disk, table, existing[0], false);
    if (found.size < sizeBytes) {
      throw new AgentError('CONFIGDRIVE_TOO_LARGE', `The config drive (${Math.ceil(sizeBytes / MiB)} MiB) does not fit in the existing config-2 partition ${found.path} (${(found.size / MiB).toFixed(1)} MiB)`, {
        details: { partition: found.path, partition_bytes: found.size, size_bytes: sizeBytes },
      });
    }
    deps.log.info({ partition: found.path }, 'reusing the existing config-2 partition');
    await waitForNode(disk, table, found.path, deps);
    return found;
  }
  try {
    if (await fixBackupHeader(disk, deps)) table = await readTable(disk, deps);
  } catch (err) {
    throw failure('PARTITION_TABLE_INVALID', `Cannot check or fix the GPT of ${disk}`, err);
  }
  const plan = planTailPartition(table, Math.max(CONFIG_DRIVE_PARTITION_BYTES, sizeBytes));
  const uuid = randomUUID();
  try {
    await deps.runner.run('sgdisk', [
      '-n', `0:${plan.start}:${plan.end}`, '-t', `0:${LINUX_FS_TYPE}`, '-c', '0:config-2', '-u', `0:${uuid}`, '--', disk,
    ], { signal: deps.signal });
  } catch (err) {
    throw failure('CONFIGDRIVE_WRITE_FAILED', `Creating the config drive partition on ${disk} failed`, err);
  }
  table = await readTable(disk, deps);
  const made = table.partitions.find((p) => p.partuuid === uuid);
  if (!made) {
    throw new AgentError('CONFIGDRIVE_WRITE_FAILED', `sgdisk succeeded but no partition with PARTUUID ${uuid} is on ${disk}`, { details: { device: disk, partuuid: uuid } });
  }
  const created = describe(disk, table, made, true);
  deps.log.info({ partition: created.path, start: created.start, size: created.size, free_bytes: plan.freeBytes }, 'config drive partition created');
  await waitForNode(disk, table, created.path, deps);
  return created;
}
