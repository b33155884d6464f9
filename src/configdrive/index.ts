/**
 * The OpenStack config drive after `bootc install to-disk`: decode the conductor's
 * `configdrive` value, put a `config-2` partition in the free tail of the disk (or reuse one),
 * write the ISO (or rebuild it as vfat) and verify it by reading it back.
 * @example
 * import { writeConfigDrive } from '../configdrive/index.ts';
 * const result = await writeConfigDrive('/dev/sda', args.configdrive, { runner, signal, log });
 * // → { partition: { path: '/dev/sda4', number: 4, partuuid, start, size, … },
 * //     format: 'iso9660', bytes: 382976, label: 'config-2' }
 * @module
 */
import type { Logger } from '../log/index.ts';
import { loadConfigDrive, type LoadConfigDriveOptions, type LoadedConfigDrive } from './decode.ts';
import { ensureConfigDrivePartition, type ConfigDrivePartition, type PartitionDeps } from './partition.ts';
import type { ConfigDriveFormat } from './probe.ts';
import { writeVfatConfigDrive } from './vfat.ts';
import { writeRawConfigDrive } from './write.ts';

export { loadConfigDrive, MAX_CONFIG_DRIVE_BYTES, DEFAULT_FETCH_TIMEOUT_MS, DEFAULT_FETCH_DEADLINE_MS } from './decode.ts';
export type { LoadConfigDriveOptions, LoadedConfigDrive } from './decode.ts';
export { ensureConfigDrivePartition, CONFIG_DRIVE_PARTITION_BYTES } from './partition.ts';
export type { ConfigDrivePartition, PartitionDeps, Sleep } from './partition.ts';
export { isConfigDriveUrl } from './download.ts';
export { writeRawConfigDrive } from './write.ts';
export type { ImageFile, TargetPartition, WriteDeps, WrittenConfigDrive } from './write.ts';
export { writeVfatConfigDrive, VFAT_LABEL } from './vfat.ts';
export { isConfigDriveLabel, probeImage } from './probe.ts';
export type { ConfigDriveFormat, ImageProbe } from './probe.ts';

export interface WriteConfigDriveDeps
  extends Omit<LoadConfigDriveOptions, 'log' | 'signal'>, Omit<PartitionDeps, 'log' | 'signal'> {
  signal?: AbortSignal | undefined;
  log: Logger;
  /** Always build a vfat config drive (IPA's `[DEFAULT]config_drive_rebuild`). */
  rebuild?: boolean | undefined;
}

export interface ConfigDriveResult {
  partition: ConfigDrivePartition;
  format: ConfigDriveFormat;
  /** Bytes written (image) or copied (files of a rebuilt vfat). */
  bytes: number;
  label: string;
}

/**
 * Decode (unless `value` is already loaded), partition, write and verify. A drive loaded here
 * is removed whatever happens; a loaded one passed in stays the caller's to dispose of.
 * @example
 * const { partition, format } = await writeConfigDrive(device, configdrive, { runner, signal, log, rebuild: false });
 * log.info({ partition: partition.path, format }, 'config drive ready');
 */
export async function writeConfigDrive(device: string, value: string | LoadedConfigDrive, deps: WriteConfigDriveDeps): Promise<ConfigDriveResult> {
  const log = deps.log.child({ component: 'configdrive' });
  const drive = typeof value === 'string' ? await loadConfigDrive(value, { ...deps, log }) : value;
  try {
    const partition = await ensureConfigDrivePartition(device, drive.size, { ...deps, log });
    // ISO 9660's 2048-byte blocks cannot be read on 4K-native disks (nor a 512-byte FAT).
    const rebuild = deps.rebuild === true || drive.blockSize < partition.sectorSize;
    if (rebuild) {
      log.info({ partition: partition.path, sector_size: partition.sectorSize, forced: deps.rebuild === true }, 'building a vfat config drive');
    }
    const written = rebuild
      ? await writeVfatConfigDrive(drive, partition, { runner: deps.runner, signal: deps.signal, log, workDir: drive.dir })
      : await writeRawConfigDrive(drive, partition, { runner: deps.runner, signal: deps.signal, log });
    return { partition, ...written };
  } finally {
    // A cleanup failure must not replace the error that matters.
    if (typeof value === 'string') await drive.dispose().catch((err: unknown) => log.warn({ err, dir: drive.dir }, 'could not remove the config drive temp dir'));
  }
}
