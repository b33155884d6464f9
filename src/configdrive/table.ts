/**
 * The partition table as `sfdisk --json` reports it, `blkid -p -o export` output, and the pure
 * arithmetic of where the config drive partition goes. No I/O here.
 * @module
 */
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import { MiB } from './stream.ts';

// Lenient: sfdisk adds keys over releases (`sectorsize` since 2.36, `attrs` on some rows).
const SfdiskPartition = z.looseObject({
  node: z.string(),
  start: z.number().int().nonnegative(),
  size: z.number().int().nonnegative(),
  type: z.string().optional(),
  uuid: z.string().optional(),
  name: z.string().optional(),
});
const SfdiskOutput = z.looseObject({
  partitiontable: z.looseObject({
    label: z.string(),
    firstlba: z.number().int().nonnegative().optional(),
    lastlba: z.number().int().nonnegative().optional(),
    sectorsize: z.number().int().positive().default(512),
    partitions: z.array(SfdiskPartition).default([]),
  }),
});

export interface TablePartition {
  node: string;
  /** Partition number, from the node name (`…p4`, `…4`, `…-part4`). */
  number: number;
  start: number;
  size: number;
  uuid: string | null;
  name: string | null;
}

/** Sizes and positions in sectors of `sectorSize` bytes. */
export interface PartitionTable {
  label: string;
  firstLba: number;
  lastLba: number | null;
  sectorSize: number;
  partitions: TablePartition[];
}

export function parseSfdiskJson(stdout: string): PartitionTable {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (err) {
    throw new AgentError('PARTITION_TABLE_INVALID', 'sfdisk --json printed output that is not JSON', { cause: err });
  }
  const parsed = SfdiskOutput.safeParse(json);
  if (!parsed.success) {
    throw new AgentError('PARTITION_TABLE_INVALID', `sfdisk --json output has an unexpected shape: ${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
    });
  }
  const table = parsed.data.partitiontable;
  return {
    label: table.label,
    firstLba: table.firstlba ?? 2048,
    lastLba: table.lastlba ?? null,
    sectorSize: table.sectorsize,
    partitions: table.partitions.map((p) => ({
      node: p.node,
      number: Number(/(\d+)$/.exec(p.node)?.[1] ?? NaN),
      start: p.start,
      size: p.size,
      uuid: p.uuid ?? null,
      name: p.name ?? null,
    })),
  };
}

/** `KEY=value` lines; blkid escapes spaces and quotes with a backslash. */
export function parseBlkidExport(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return out;
}

/** The kernel's naming: a `p` goes between a disk name ending in a digit and the number. */
export function partitionNodePath(device: string, number: number): string {
  return /\d$/.test(device) ? `${device}p${number}` : `${device}${number}`;
}

/** sgdisk -v's wording when the disk grew (or was copied) and the backup GPT is not at the end. */
export function backupHeaderMisplaced(verifyOutput: string): boolean {
  return /doesn't\s+reside\s+at\s+the\s+end\s+of\s+the\s+disk/i.test(verifyOutput);
}

export interface TailPlan {
  /** First and last sector of the new partition. */
  start: number;
  end: number;
  /** Free bytes after the last partition. */
  freeBytes: number;
}

/**
 * Place a `sizeBytes` partition that ends at the last usable sector, start aligned down to
 * 1 MiB like sgdisk's `-n 0:-64MiB:0` (so it is never smaller than asked). Fails, naming the
 * free space, when the tail after the last partition is too small.
 */
export function planTailPartition(table: PartitionTable, sizeBytes: number): TailPlan {
  if (table.lastLba === null) {
    throw new AgentError('PARTITION_TABLE_INVALID', 'sfdisk reports no last usable sector for this GPT');
  }
  const ss = table.sectorSize;
  const usedEnd = table.partitions.reduce((max, p) => Math.max(max, p.start + p.size - 1), table.firstLba - 1);
  const freeSectors = Math.max(0, table.lastLba - usedEnd);
  const freeBytes = freeSectors * ss;
  if (freeBytes < sizeBytes) {
    const freeMiB = (freeBytes / MiB).toFixed(1);
    throw new AgentError('CONFIGDRIVE_NO_SPACE',
      `Only ${freeMiB} MiB is free at the end of the disk, a config drive partition needs ${sizeBytes / MiB} MiB (was the root partition sized with room for it?)`,
      { details: { free_bytes: freeBytes, free_mib: Number(freeMiB), needed_bytes: sizeBytes } });
  }
  const align = Math.max(1, MiB / ss);
  const wanted = table.lastLba + 1 - Math.ceil(sizeBytes / ss);
  const aligned = Math.floor(wanted / align) * align;
  return { start: aligned > usedEnd ? aligned : wanted, end: table.lastLba, freeBytes };
}
