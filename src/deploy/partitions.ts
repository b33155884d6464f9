/**
 * Reading the partition table back after bootc wrote it, without trusting udev (a ramdisk may
 * have none): `partx` makes the kernel see the partitions, `sfdisk --json` reports them.
 * @module
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';

const SfdiskJson = z.object({
  partitiontable: z.looseObject({
    label: z.string(),
    id: z.string().optional(),
    device: z.string(),
    unit: z.string().optional(),
    lastlba: z.number().optional(),
    sectorsize: z.number().optional(),
    partitions: z.array(z.looseObject({
      node: z.string(),
      start: z.number(),
      size: z.number(),
      type: z.string(),
      uuid: z.string().optional(),
      name: z.string().optional(),
    })).default([]),
  }),
});

export interface PartitionInfo {
  node: string;
  number: number;
  start_bytes: number;
  size_bytes: number;
  type: string;
  partuuid: string | undefined;
  name: string | undefined;
}

export interface PartitionTable {
  label: string;
  sectorSize: number;
  partitions: PartitionInfo[];
  /** Unallocated bytes after the last partition (before the backup GPT). */
  freeTailBytes: number;
}

// GUIDs bootc uses (bootc-install.md §1.3), for the IPA partition UUID keys.
const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const PREP_TYPE = '9E1A2D38-C612-4316-AA26-8B49521E5A8B';

/** Where the kernel has a partition, in 512-byte sectors (sysfs units), or undefined if it has none. */
async function kernelGeometry(sysfs: string, node: string): Promise<{ start: number; size: number } | undefined> {
  const dir = join(sysfs, 'class/block', basename(node));
  try {
    const [start, size] = await Promise.all([readFile(join(dir, 'start'), 'utf8'), readFile(join(dir, 'size'), 'utf8')]);
    return { start: Number(start.trim()), size: Number(size.trim()) };
  } catch {
    return undefined;
  }
}

// Partitions of the table the kernel does not know, or knows at another place; and partitions
// the kernel has that the table lacks. Empty when the disk is not in sysfs (nothing to compare).
async function kernelMismatches(sysfs: string, device: string, table: PartitionTable): Promise<string[]> {
  const disk = basename(device);
  let entries: string[];
  try {
    entries = await readdir(join(sysfs, 'class/block', disk));
  } catch {
    return [];
  }
  const bad: string[] = [];
  for (const p of table.partitions) {
    const seen = await kernelGeometry(sysfs, p.node);
    if (!seen) bad.push(`${p.node}: unknown to the kernel`);
    else if (seen.start * 512 !== p.start_bytes || seen.size * 512 !== p.size_bytes) {
      bad.push(`${p.node}: kernel has start ${seen.start * 512} size ${seen.size * 512}, table has start ${p.start_bytes} size ${p.size_bytes}`);
    }
  }
  const wanted = new Set(table.partitions.map((p) => basename(p.node)));
  for (const entry of entries) {
    if (entry.startsWith(disk) && entry !== disk && !wanted.has(entry)) bad.push(`/dev/${entry}: stale, not in the table`);
  }
  return bad;
}

async function readSfdisk(runner: CommandRunner, device: string, diskBytes: number, signal: AbortSignal | undefined): Promise<PartitionTable> {
  let json: unknown;
  try {
    json = JSON.parse((await runner.run('sfdisk', ['--json', '--', device], { signal })).stdout);
  } catch (err) {
    throw new AgentError('PARTITION_VALIDATION_FAILED', `Cannot read the partition table of ${device} after install`, {
      cause: err, details: isAgentError(err) ? { ...err.details } : {},
    });
  }
  const parsed = SfdiskJson.safeParse(json);
  if (!parsed.success) throw new AgentError('PARTITION_VALIDATION_FAILED', `Unexpected sfdisk output for ${device}: ${parsed.error.issues[0]?.message ?? ''}`);
  const table = parsed.data.partitiontable;
  const sector = table.sectorsize ?? 512;
  const partitions = table.partitions.map((p) => ({
    node: p.node,
    number: Number(/(\d+)$/.exec(p.node)?.[1] ?? 0),
    start_bytes: p.start * sector,
    size_bytes: p.size * sector,
    type: p.type.toUpperCase(),
    partuuid: p.uuid?.toLowerCase(),
    name: p.name,
  }));
  const end = partitions.reduce((max, p) => Math.max(max, p.start_bytes + p.size_bytes), 0);
  const lastUsable = table.lastlba !== undefined ? (table.lastlba + 1) * sector : diskBytes - 33 * 512;
  return { label: table.label, sectorSize: sector, partitions, freeTailBytes: Math.max(0, lastUsable - end) };
}

/**
 * Reads the table bootc wrote and makes the kernel's partitions match it. A ramdisk may have
 * neither udev nor partition-table parsers, so the nodes are set through BLKPG: `partx -d` then
 * `partx -a`, not `partx -u`, which re-adds partition 1 before deleting an old partition 2 that
 * overlaps it (EBUSY) and leaves stale partitions behind. Any remaining mismatch is an error:
 * the config drive written through a stale node would land inside another partition.
 */
export async function readPartitionTable(runner: CommandRunner, device: string, diskBytes: number, signal?: AbortSignal, sysfs = '/sys'): Promise<PartitionTable> {
  const table = await readSfdisk(runner, device, diskBytes, signal);
  let bad = await kernelMismatches(sysfs, device, table);
  for (let attempt = 1; bad.length > 0 && attempt <= 3; attempt++) {
    await runner.run('partx', ['-d', '--', device], { signal, okExitCodes: [0, 1] }).catch(() => undefined);
    if (table.partitions.length > 0) await runner.run('partx', ['-a', '--', device], { signal, okExitCodes: [0, 1] }).catch(() => undefined);
    bad = await kernelMismatches(sysfs, device, table);
    if (bad.length > 0) await sleep(200 * attempt, undefined, { signal });
  }
  if (bad.length > 0) {
    throw new AgentError('PARTITION_VALIDATION_FAILED', `The kernel's partitions of ${device} do not match its partition table: ${bad.join('; ')}`, {
      details: { device, mismatches: bad },
    });
  }
  return table;
}

/** IPA's `get_partition_uuids` keys for a bootc disk. */
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
