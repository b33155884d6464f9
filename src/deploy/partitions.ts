/**
 * Reading the partition table back after bootc wrote it, without trusting udev (a ramdisk may
 * have none): `partx` makes the kernel see the partitions, `sfdisk --json` reports them.
 * @module
 */
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

export async function readPartitionTable(runner: CommandRunner, device: string, diskBytes: number, signal?: AbortSignal): Promise<PartitionTable> {
  // The kernel here has no partition-table parsers: partx adds the nodes through BLKPG.
  await runner.run('partx', ['--update', '--', device], { signal, okExitCodes: [0, 1] }).catch(() => undefined);
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
