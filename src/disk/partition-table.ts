/**
 * The partition table of a disk as `sfdisk --json` reports it: one type for every user (the
 * bootc step's verify phase, write_image's partition UUIDs, the config drive, the wipe).
 * Positions and sizes are in sectors of the table's `sectorSize`, as the table stores them;
 * `partitionBytes` and `freeTailBytes` give bytes.
 * @module
 */
import { z } from 'zod';
import { AgentError, isAgentError, type ErrorCode } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { parseToolJson } from './tool-json.ts';

// Lenient: sfdisk adds keys over releases (`sectorsize` since 2.36, `attrs` on some rows), and
// MBR tables have no first/last usable sector, partition UUIDs or names.
const SfdiskPartition = z.looseObject({
  node: z.string(),
  start: z.number().int().nonnegative(),
  size: z.number().int().nonnegative(),
  type: z.string().optional(),
  uuid: z.string().optional(),
  name: z.string().optional(),
});

/** The schema of `sfdisk --json` output. */
export const SfdiskOutput = z.looseObject({
  partitiontable: z.looseObject({
    label: z.string(),
    firstlba: z.number().int().nonnegative().optional(),
    lastlba: z.number().int().nonnegative().optional(),
    sectorsize: z.number().int().positive().default(512),
    partitions: z.array(SfdiskPartition).default([]),
  }),
});

export interface TablePartition {
  /** The kernel's name for it: /dev/sda4, /dev/nvme0n1p4, /dev/loop0p2. */
  node: string;
  /** Partition number, from the node name (`…p4`, `…4`). */
  number: number;
  /** First sector and length, in sectors of the table's `sectorSize`. */
  start: number;
  size: number;
  /** A GPT type GUID (upper-case) or an MBR type in hex (`83`); null if sfdisk printed none. */
  type: string | null;
  /** The GPT partition UUID, lower-case (the kernel's PARTUUID); null on MBR. */
  partuuid: string | null;
  /** The GPT partition name; null when it has none. */
  name: string | null;
}

export interface PartitionTable {
  /** `gpt`, `dos`, … */
  label: string;
  /** Logical sector size in bytes. */
  sectorSize: number;
  /** First and last usable sector (GPT); `lastLba` is null for MBR. */
  firstLba: number;
  lastLba: number | null;
  partitions: TablePartition[];
}

/** One partition as the bootc step reports it (`partitions` of its result), in bytes. */
export interface PartitionInfo {
  node: string;
  number: number;
  start_bytes: number;
  size_bytes: number;
  type: string | null;
  partuuid: string | undefined;
  name: string | undefined;
}

// The protective MBR, GPT header and entries at 512-byte sectors: what an MBR disk is assumed
// to keep free at its end when there is no last usable sector to go by.
const GPT_BYTES = 33 * 512;

/** `sfdisk --json` output as a PartitionTable; `code` (default PARTITION_TABLE_INVALID) if it is not one. */
export function parseSfdiskJson(stdout: string, code: ErrorCode = 'PARTITION_TABLE_INVALID'): PartitionTable {
  const table = parseToolJson(stdout, SfdiskOutput, { tool: 'sfdisk --json', code }).partitiontable;
  return {
    label: table.label,
    sectorSize: table.sectorsize,
    firstLba: table.firstlba ?? 2048,
    lastLba: table.lastlba ?? null,
    partitions: table.partitions.map((p) => ({
      node: p.node,
      number: Number(/(\d+)$/.exec(p.node)?.[1] ?? 0),
      start: p.start,
      size: p.size,
      type: p.type?.toUpperCase() ?? null,
      partuuid: p.uuid?.toLowerCase() ?? null,
      name: p.name ?? null,
    })),
  };
}

export interface ReadPartitionTableOptions {
  signal?: AbortSignal | undefined;
  /** The code of every failure but cancellation and a missing sfdisk (default PARTITION_TABLE_INVALID). */
  code?: ErrorCode | undefined;
  /** What the caller expected, for the message: `after install`, `(bootc should have written a GPT)`. */
  context?: string | undefined;
}

/** The disk's partition table (`sfdisk --json`); a disk without one is an error. */
export async function readPartitionTable(runner: CommandRunner, device: string, options: ReadPartitionTableOptions = {}): Promise<PartitionTable> {
  const code = options.code ?? 'PARTITION_TABLE_INVALID';
  let stdout: string;
  try {
    ({ stdout } = await runner.run('sfdisk', ['--json', '--', device], { signal: options.signal }));
  } catch (err) {
    if (isAgentError(err) && (err.code === 'CANCELLED' || err.code === 'COMMAND_NOT_FOUND' || err.code === code)) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    const what = options.context ? `${device} ${options.context}` : device;
    throw new AgentError(code, `Cannot read a partition table from ${what}: ${reason}`, {
      cause: err, details: isAgentError(err) ? { ...err.details } : {},
    });
  }
  return parseSfdiskJson(stdout, code);
}

/**
 * The disk's partition table, or null when it has none sfdisk can read (a raw disk image may
 * have none; then the kernel should know no partitions of it). Only cancellation throws.
 */
export async function readPartitionTableIfAny(runner: CommandRunner, device: string, options: { signal?: AbortSignal | undefined; log?: Logger | undefined } = {}): Promise<PartitionTable | null> {
  try {
    return await readPartitionTable(runner, device, { signal: options.signal });
  } catch (err) {
    if (isAgentError(err) && err.code === 'CANCELLED') throw err;
    options.log?.debug({ err, device }, 'no readable partition table');
    return null;
  }
}

/** The kernel's naming: a `p` goes between a disk name ending in a digit and the number. */
export function partitionNodePath(device: string, number: number): string {
  return /\d$/.test(device) ? `${device}p${number}` : `${device}${number}`;
}

/** Offset and size of a partition in bytes. */
export function partitionBytes(table: PartitionTable, part: TablePartition): { start: number; size: number } {
  return { start: part.start * table.sectorSize, size: part.size * table.sectorSize };
}

/** The first sector after the last partition (the first usable sector when there is none). */
export function usedEndSector(table: PartitionTable): number {
  return table.partitions.reduce((end, p) => Math.max(end, p.start + p.size), table.firstLba);
}

/**
 * Unallocated bytes after the last partition, up to the last usable sector (before the backup
 * GPT). MBR tables do not say where usable space ends: `diskBytes` less a GPT's size stands in.
 */
export function freeTailBytes(table: PartitionTable, diskBytes = 0): number {
  const limit = table.lastLba !== null ? (table.lastLba + 1) * table.sectorSize : diskBytes - GPT_BYTES;
  return Math.max(0, limit - usedEndSector(table) * table.sectorSize);
}

/** The partitions in bytes, as the bootc step's result reports them. */
export function describePartitions(table: PartitionTable): PartitionInfo[] {
  return table.partitions.map((p) => ({
    node: p.node,
    number: p.number,
    start_bytes: p.start * table.sectorSize,
    size_bytes: p.size * table.sectorSize,
    type: p.type,
    partuuid: p.partuuid ?? undefined,
    name: p.name ?? undefined,
  }));
}

// GUIDs bootc uses (bootc-install.md §1.3), for the IPA partition UUID keys.
const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const PREP_TYPE = '9E1A2D38-C612-4316-AA26-8B49521E5A8B';

/** IPA's `get_partition_uuids` keys: the partition named `root` (else the last), the ESP, PReP. */
export function partitionUuids(table: PartitionTable): Record<string, string> {
  const out: Record<string, string> = {};
  const root = table.partitions.find((p) => p.name === 'root') ?? table.partitions.at(-1);
  const esp = table.partitions.find((p) => p.type === ESP_TYPE);
  const prep = table.partitions.find((p) => p.type === PREP_TYPE);
  if (root?.partuuid) out['root uuid'] = root.partuuid;
  if (esp?.partuuid) out['efi system partition uuid'] = esp.partuuid;
  if (prep?.partuuid) out['PReP Boot partition uuid'] = prep.partuuid;
  return out;
}
