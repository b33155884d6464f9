/**
 * How a disk-writing deploy step ends: the config drive at the end of the disk, the partition
 * table read back (the kernel's view of it made to match), and IPA's partition UUIDs recorded
 * for `standby.get_partition_uuids`.
 * @module
 */
import { open } from 'node:fs/promises';
import type { LoadedConfigDrive } from '../configdrive/index.ts';
import { partitionUuids, readPartitionTableIfAny, syncKernelPartitions, type PartitionTable } from '../disk/index.ts';
import { AgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { StepRun } from './phased-step.ts';

export interface DiskFinishDeps {
  runner: CommandRunner;
  /** Writes the config drive (the conductor's value, or as loaded ahead) at the end of the disk (src/configdrive). */
  writeConfigDrive(device: string, value: string | LoadedConfigDrive, options: { signal: AbortSignal; log: Logger }): Promise<Record<string, unknown>>;
  /** Records IPA's partition UUIDs for `standby.get_partition_uuids`. */
  recordPartitionUuids(uuids: Record<string, string>): void;
}

interface Finished<T> {
  table: T;
  uuids: Record<string, string>;
  configdrive: Record<string, unknown> | null;
}

async function writeConfigDrive(deps: DiskFinishDeps, run: StepRun<string>, device: string, value: LoadedConfigDrive | null) {
  if (!value) return null;
  run.enter('configdrive', 'writing the config drive');
  return deps.writeConfigDrive(device, value, { signal: run.signal, log: run.log });
}

// The table bootc wrote, with the kernel's partitions made to match it: the config drive goes
// through those nodes, and a stale one would send it into another partition.
async function installedTable(deps: DiskFinishDeps, run: StepRun<string>, device: string): Promise<PartitionTable> {
  const { table } = await syncKernelPartitions(deps.runner, device, {
    mode: 'strict', code: 'PARTITION_VALIDATION_FAILED', context: 'after install', signal: run.signal, log: run.log,
  });
  return table!;
}

/**
 * The bootc step: the installed table is checked before the config drive is written (a disk
 * without partitions fails), then read again if the config drive added one.
 */
export async function finishInstalledDisk(deps: DiskFinishDeps, run: StepRun<string>, device: string, configdrive: LoadedConfigDrive | null): Promise<Finished<PartitionTable>> {
  const installed = await installedTable(deps, run, device);
  if (installed.partitions.length === 0) {
    throw new AgentError('PARTITION_VALIDATION_FAILED', `bootc reported success but ${device} has no partitions`, { details: { device } });
  }
  const written = await writeConfigDrive(deps, run, device, configdrive);
  const table = written ? await installedTable(deps, run, device) : installed;
  const uuids = partitionUuids(table);
  deps.recordPartitionUuids(uuids);
  return { table, uuids, configdrive: written };
}

/** The MBR disk signature at offset 440, as IPA's `get_disk_identifier` prints it (`0x%08x`). */
async function diskIdentifier(device: string): Promise<string | undefined> {
  try {
    const handle = await open(device, 'r');
    try {
      const buf = Buffer.alloc(4);
      const { bytesRead } = await handle.read(buf, 0, 4, 440);
      return bytesRead === 4 ? `0x${buf.readUInt32LE(0).toString(16).padStart(8, '0')}` : undefined;
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * `write_image`: a whole-disk image need not have a partition table; IPA reports its disk
 * identifier as the root UUID.
 */
export async function finishImageDisk(deps: DiskFinishDeps, run: StepRun<string>, device: string, configdrive: LoadedConfigDrive | null): Promise<Finished<PartitionTable | null>> {
  const written = await writeConfigDrive(deps, run, device, configdrive);
  run.enter('partitions', 'reading partition UUIDs');
  const table = await readPartitionTableIfAny(deps.runner, device, { signal: run.signal, log: run.log });
  const uuids = table ? partitionUuids(table) : {};
  const identifier = await diskIdentifier(device);
  if (identifier) uuids['root uuid'] = identifier;
  deps.recordPartitionUuids(uuids);
  return { table, uuids, configdrive: written };
}
