/**
 * Making the kernel's partitions of a disk match its partition table after the table (or the
 * whole disk) was rewritten. The ramdisk, like CI, may have neither udev nor partition-table
 * parsers in its kernel, so nothing re-reads the table by itself: the partitions are set through
 * BLKPG, `partx -d` (all of them) then `partx -a`, and checked against sysfs.
 *
 * Not `partx -u`: it updates partition by partition, so it re-adds partition 1 before deleting an
 * old partition 2 that overlaps it (EBUSY), and leaves stale partitions behind. `partprobe` is not
 * needed: it does the same BLKPG work, and partx -d/-a is checked here on every layout change
 * the callers make (test/disk/kernel-partitions.integration.test.ts).
 * @module
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, realpath } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { AgentError, isAgentError, type ErrorCode } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { partitionBytes, partitionNodePath, readPartitionTable, readPartitionTableIfAny, type PartitionTable, type TablePartition } from './partition-table.ts';
import { defaultSleep, pause, type Sleep } from './sleep.ts';

/** Where the kernel's view of the disks is read, and whether udev runs (tests fake both). */
export interface KernelEnvironment {
  /** Where sysfs is mounted (default /sys). */
  sysRoot?: string | undefined;
  /** Whether udev runs here, so its work is waited for (default: its control socket exists). */
  udev?: boolean | undefined;
}

export interface SyncKernelPartitionsOptions extends KernelEnvironment {
  /**
   * strict: the disk must have a readable table and the kernel must end up matching it, else
   * `code` is thrown (a config drive written through a stale node would land inside another
   * partition). lenient: a disk without a table is fine (a raw disk image may have none; then
   * the kernel must end up with no partitions), and a mismatch is logged and returned.
   */
  mode: 'strict' | 'lenient';
  /** strict: the code of an unreadable table or a mismatch (default PARTITION_VALIDATION_FAILED). */
  code?: ErrorCode | undefined;
  /** strict: what the caller expected, for the message of an unreadable table (`after install`). */
  context?: string | undefined;
  /** The table, if the caller has just read it; null: the disk has none. Read when absent. */
  table?: PartitionTable | null | undefined;
  signal?: AbortSignal | undefined;
  log?: Logger | undefined;
  /** partx rounds before giving up (default 3), and the sleep between them (tests). */
  attempts?: number | undefined;
  sleep?: Sleep | undefined;
}

export interface KernelPartitionSync {
  /** The table the kernel was matched to; null when the disk has none (lenient only). */
  table: PartitionTable | null;
  /** The commands run, in order: `partx -d`, `partx -a`, `udevadm`. */
  steps: string[];
  /** What still differs (lenient only; strict throws instead). Empty when in step. */
  mismatches: string[];
}

// sysfs counts partition positions in 512-byte units whatever the logical sector size.
const SYSFS_SECTOR = 512;
// MBR extended partition types (CHS, LBA, Linux).
const EXTENDED_TYPES = new Set(['5', 'F', '85']);

async function readGeometry(dir: string): Promise<{ start: number; size: number } | undefined> {
  try {
    const [start, size] = await Promise.all([readFile(join(dir, 'start'), 'utf8'), readFile(join(dir, 'size'), 'utf8')]);
    return { start: Number(start.trim()), size: Number(size.trim()) };
  } catch {
    return undefined;
  }
}

interface Mismatch {
  /** missing: the kernel lacks it; moved: the kernel has it elsewhere; stale: the table lacks it. */
  kind: 'missing' | 'moved' | 'stale';
  text: string;
}

// What is wrong with the kernel's view of one partition of the table, if anything.
async function partitionMismatch(diskDir: string, name: string, table: PartitionTable, part: TablePartition): Promise<Mismatch | undefined> {
  const seen = await readGeometry(join(diskDir, name));
  if (!seen) return { kind: 'missing', text: `/dev/${name}: unknown to the kernel` };
  const { start, size } = partitionBytes(table, part);
  // The kernel keeps only the first sector or two of an MBR extended partition (its EBR).
  const extended = table.label === 'dos' && part.type !== null && EXTENDED_TYPES.has(part.type);
  if (seen.start * SYSFS_SECTOR === start && (extended || seen.size * SYSFS_SECTOR === size)) return undefined;
  const text = `/dev/${name}: kernel has start ${seen.start * SYSFS_SECTOR} size ${seen.size * SYSFS_SECTOR}, table has start ${start} size ${size}`;
  return { kind: 'moved', text };
}

async function compare(sysRoot: string, kname: string, table: PartitionTable | null): Promise<Mismatch[]> {
  const diskDir = join(sysRoot, 'class/block', kname);
  let entries: string[];
  try {
    entries = await readdir(diskDir);
  } catch {
    return [];
  }
  const bad: Mismatch[] = [];
  const wanted = new Set<string>();
  for (const part of table?.partitions ?? []) {
    const name = partitionNodePath(kname, part.number);
    wanted.add(name);
    const problem = table && (await partitionMismatch(diskDir, name, table, part));
    if (problem) bad.push(problem);
  }
  for (const entry of entries) {
    if (entry.startsWith(kname) && entry !== kname && !wanted.has(entry)) bad.push({ kind: 'stale', text: `/dev/${entry}: stale, not in the table` });
  }
  return bad;
}

/**
 * How the kernel's partitions of disk `kname` differ from `table` (null: no partitions wanted):
 * partitions it lacks or has elsewhere, and stale ones the table lacks. Empty when the disk is
 * not in sysfs (nothing to compare).
 */
export async function kernelMismatches(sysRoot: string, kname: string, table: PartitionTable | null): Promise<string[]> {
  return (await compare(sysRoot, kname, table)).map((m) => m.text);
}

/**
 * Make the kernel's partitions of `device` match its partition table (see the module comment),
 * then wait for udev where it runs. Nothing is run when they already match.
 * @example
 * const { table } = await syncKernelPartitions(runner, '/dev/sda', { mode: 'strict', signal, log });
 * // the kernel's /dev/sda1… are where table.partitions says
 */
export async function syncKernelPartitions(
  runner: CommandRunner, device: string, options: SyncKernelPartitionsOptions & { mode: 'strict'; table?: PartitionTable | undefined },
): Promise<KernelPartitionSync & { table: PartitionTable }>;
export async function syncKernelPartitions(runner: CommandRunner, device: string, options: SyncKernelPartitionsOptions): Promise<KernelPartitionSync>;
export async function syncKernelPartitions(runner: CommandRunner, device: string, options: SyncKernelPartitionsOptions): Promise<KernelPartitionSync> {
  const { signal, log } = options;
  const code = options.code ?? 'PARTITION_VALIDATION_FAILED';
  const table = options.table !== undefined ? options.table
    : options.mode === 'strict' ? await readPartitionTable(runner, device, { signal, code, context: options.context })
    : await readPartitionTableIfAny(runner, device, { signal, log });
  const sysRoot = options.sysRoot ?? '/sys';
  const kname = basename(await realpath(device).catch(() => device));
  const steps: string[] = [];
  const run = async (file: string, args: string[]): Promise<void> => {
    try {
      // partx exits 1 when it could not change some partitions: the check after it decides.
      await runner.run(file, args, { signal, okExitCodes: [0, 1], timeoutMs: 60_000 });
      steps.push(file === 'partx' ? `partx ${args[0]}` : file);
    } catch (err) {
      if (isAgentError(err) && err.code === 'CANCELLED') throw err;
      log?.debug({ err, argv: [file, ...args] }, 'partition sync command failed (the check after it decides)');
    }
  };
  let found = await compare(sysRoot, kname, table);
  const attempts = options.attempts ?? 3;
  for (let attempt = 1; found.length > 0 && attempt <= attempts; attempt++) {
    if (attempt > 1) await pause(options.sleep ?? defaultSleep, 200 * (attempt - 1), signal, 'Re-reading the partition table');
    log?.debug({ device, mismatches: found.map((m) => m.text), attempt }, 'the kernel\'s partitions differ from the table');
    // Partitions only missing (a partition was just added) are added beside the others: partx -a
    // fails on those the kernel has, and adds the rest.
    if (attempt > 1 || found.some((m) => m.kind !== 'missing')) await run('partx', ['-d', '--', device]);
    if (table && table.partitions.length > 0) await run('partx', ['-a', '--', device]);
    found = await compare(sysRoot, kname, table);
  }
  if (options.udev ?? existsSync('/run/udev/control')) await run('udevadm', ['settle', '--timeout=30']);
  const mismatches = found.map((m) => m.text);
  if (mismatches.length > 0 && options.mode === 'strict') {
    throw new AgentError(code, `The kernel's partitions of ${device} do not match its partition table: ${mismatches.join('; ')}`, {
      details: { device, mismatches },
    });
  }
  if (mismatches.length > 0) log?.warn({ device, mismatches }, 'the kernel\'s partitions still differ from the table');
  return { table, steps, mismatches };
}
