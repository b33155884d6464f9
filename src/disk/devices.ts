/**
 * Block devices as ironic-python-agent reports them (`hardware.py` `list_all_block_devices`):
 * lsblk rows filtered to whole disks, enriched from sysfs and `/dev/disk/by-path`.
 * There is no udev in the ramdisk, so nothing here reads the udev database.
 * @module
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { runLsblk, type LsblkRow } from './lsblk.ts';

/** One disk, with IPA's inventory fields plus `removable`, `read_only` and `type`. */
export const BlockDevice = z.object({
  name: z.string().startsWith('/dev/'),
  model: z.string().nullable(),
  size: z.number().int().nonnegative(),
  rotational: z.boolean(),
  // Lists appear for multipath disks reached through several paths (IPA accepts both).
  wwn: z.union([z.string(), z.array(z.string())]).nullable(),
  serial: z.union([z.string(), z.array(z.string())]).nullable(),
  vendor: z.string().nullable(),
  wwn_with_extension: z.string().nullable(),
  wwn_vendor_extension: z.string().nullable(),
  hctl: z.string().nullable(),
  by_path: z.string().nullable(),
  logical_sectors: z.number().int().positive().nullable(),
  physical_sectors: z.number().int().positive().nullable(),
  tran: z.string().nullable(),
  removable: z.boolean(),
  read_only: z.boolean(),
  type: z.string(),
});
export type BlockDevice = z.infer<typeof BlockDevice>;

export interface ListBlockDevicesOptions {
  runner: CommandRunner;
  signal?: AbortSignal;
  log?: Logger;
  /** Also report loop devices (tests and demos only; `include_loop_devices`). */
  includeLoop?: boolean;
  /** Where sysfs is mounted (tests point this at a fake tree). */
  sysRoot?: string;
  /** Directory of by-path symlinks; absent without udev, which is fine. */
  byPathDir?: string;
}

// Names IPA never reports: RAM disks, zram swap and floppies look like disks to lsblk.
const SKIPPED_PREFIXES = ['ram', 'zram', 'fd'];

/**
 * The rows that are whole disks, in listing order: type `disk`, RAID volumes, multipath
 * maps (whose member paths are dropped) and, on request, loop devices. Zero-size devices
 * (empty loop slots, virtual floppies) and partitions are left out.
 */
export function selectDiskRows(rows: readonly LsblkRow[], includeLoop: boolean): LsblkRow[] {
  const multipathMembers = new Set(rows.filter((r) => r.type === 'mpath' && r.pkname).map((r) => r.pkname));
  const seen = new Set<string>();
  return rows.filter((row) => {
    if (seen.has(row.kname)) return false;
    seen.add(row.kname);
    if (SKIPPED_PREFIXES.some((p) => row.kname.startsWith(p))) return false;
    const type = row.type ?? '';
    const wanted = type === 'disk' || type.includes('raid') || type === 'mpath' || (includeLoop && type === 'loop');
    if (!wanted) return false;
    if (multipathMembers.has(row.kname)) return false;
    return (row.size ?? 0) > 0;
  });
}

// lsblk prints udev's ID_WWN_WITH_EXTENSION when it has one; an NAA-6 name of 32 hex digits
// is the 16-digit WWN followed by the vendor extension (udev's scsi_id builds it that way).
export function splitWwn(raw: string | null): Pick<BlockDevice, 'wwn' | 'wwn_with_extension' | 'wwn_vendor_extension'> {
  if (!raw) return { wwn: null, wwn_with_extension: null, wwn_vendor_extension: null };
  const value = raw.startsWith('naa.') ? `0x${raw.slice(4)}` : raw;
  const naa6 = /^0x([0-9a-fA-F]{16})([0-9a-fA-F]{16})$/.exec(value);
  if (naa6) return { wwn: `0x${naa6[1]}`, wwn_with_extension: value, wwn_vendor_extension: `0x${naa6[2]}` };
  return { wwn: value, wwn_with_extension: value, wwn_vendor_extension: null };
}

async function readTrimmed(path: string): Promise<string | null> {
  try {
    const value = (await readFile(path, 'utf8')).trim();
    return value === '' ? null : value;
  } catch {
    return null;
  }
}

// IPA reads HCTL from the single entry of /sys/block/<k>/device/scsi_device.
async function readHctl(sysRoot: string, kname: string): Promise<string | null> {
  try {
    const [first] = await readdir(join(sysRoot, 'block', kname, 'device', 'scsi_device'));
    return first ?? null;
  } catch {
    return null;
  }
}

async function readFlag(path: string): Promise<boolean | null> {
  const value = await readTrimmed(path);
  return value === null ? null : value === '1';
}

/** Map of `/dev/<kname>` → `/dev/disk/by-path/<link>`; empty when the directory is absent. */
export async function readByPathLinks(byPathDir: string, log?: Logger): Promise<Map<string, string>> {
  const links = new Map<string, string>();
  let entries: string[];
  try {
    entries = await readdir(byPathDir);
  } catch (err) {
    log?.debug({ dir: byPathDir, code: (err as NodeJS.ErrnoException).code }, 'no by-path links (no udev)');
    return links;
  }
  for (const entry of entries.sort()) {
    const path = join(byPathDir, entry);
    try {
      const target = resolve(byPathDir, await readlink(path));
      if (!links.has(target)) links.set(target, path);
    } catch {
      // Not a symlink: udev only makes symlinks here, so ignore anything else.
    }
  }
  return links;
}

/** Build the IPA-shaped device from its lsblk row, preferring sysfs where IPA reads sysfs. */
export async function toBlockDevice(row: LsblkRow, sysRoot: string, byPath: ReadonlyMap<string, string>): Promise<BlockDevice> {
  const base = join(sysRoot, 'block', row.kname);
  const [sysVendor, sysHctl, sysRo, sysRm, sysRota] = await Promise.all([
    readTrimmed(join(base, 'device', 'vendor')),
    row.hctl ? Promise.resolve(null) : readHctl(sysRoot, row.kname),
    row.ro === null ? readFlag(join(base, 'ro')) : Promise.resolve(null),
    row.rm === null ? readFlag(join(base, 'removable')) : Promise.resolve(null),
    row.rota === null ? readFlag(join(base, 'queue', 'rotational')) : Promise.resolve(null),
  ]);
  const name = `/dev/${row.kname}`;
  return {
    name,
    model: row.model,
    size: row.size ?? 0,
    rotational: row.rota ?? sysRota ?? false,
    ...splitWwn(row.wwn),
    serial: row.serial,
    vendor: sysVendor ?? row.vendor,
    hctl: row.hctl ?? sysHctl,
    by_path: byPath.get(name) ?? null,
    logical_sectors: row['log-sec'] || null,
    physical_sectors: row['phy-sec'] || null,
    tran: row.tran,
    removable: row.rm ?? sysRm ?? false,
    read_only: row.ro ?? sysRo ?? false,
    type: row.type ?? 'disk',
  };
}

/**
 * List the machine's disks as IPA reports them (`/dev/sda`, size in bytes, …), in lsblk
 * order. Loop devices only with `includeLoop`.
 */
export async function listBlockDevices(options: ListBlockDevicesOptions): Promise<BlockDevice[]> {
  const sysRoot = options.sysRoot ?? '/sys';
  const [rows, byPath] = await Promise.all([
    runLsblk(options.runner, { signal: options.signal }),
    readByPathLinks(options.byPathDir ?? '/dev/disk/by-path', options.log),
  ]);
  const disks = selectDiskRows(rows, options.includeLoop ?? false);
  const devices = await Promise.all(disks.map((row) => toBlockDevice(row, sysRoot, byPath)));
  options.log?.debug({ devices: devices.map((d) => d.name) }, 'block devices listed');
  return devices;
}
