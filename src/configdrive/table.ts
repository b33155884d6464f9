/**
 * What is particular to the config drive in a partition table: `blkid -p -o export` output,
 * sgdisk's word for a misplaced backup GPT, and the pure arithmetic of where the config drive
 * partition goes. No I/O here.
 * @module
 */
import { freeTailBytes, usedEndSector, type PartitionTable } from '../disk/index.ts';
import { AgentError } from '../errors.ts';
import { MiB } from '../io/sizes.ts';

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
  const freeBytes = freeTailBytes(table);
  if (freeBytes < sizeBytes) {
    const freeMiB = (freeBytes / MiB).toFixed(1);
    throw new AgentError('CONFIGDRIVE_NO_SPACE',
      `Only ${freeMiB} MiB is free at the end of the disk, a config drive partition needs ${sizeBytes / MiB} MiB (was the root partition sized with room for it?)`,
      { details: { free_bytes: freeBytes, free_mib: Number(freeMiB), needed_bytes: sizeBytes } });
  }
  const align = Math.max(1, MiB / ss);
  const wanted = table.lastLba + 1 - Math.ceil(sizeBytes / ss);
  const aligned = Math.floor(wanted / align) * align;
  return { start: aligned >= usedEndSector(table) ? aligned : wanted, end: table.lastLba, freeBytes };
}
