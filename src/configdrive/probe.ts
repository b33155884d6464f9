/**
 * Recognising a config drive image without mounting it (iso9660 and vfat cannot be mounted in
 * every ramdisk): the ISO 9660 primary volume descriptor and the FAT boot sector are parsed
 * straight from the bytes.
 * @module
 */
import { open, type FileHandle } from 'node:fs/promises';

export type ConfigDriveFormat = 'iso9660' | 'vfat';

/** What the first bytes of an image or partition say about its filesystem. */
export interface ImageProbe {
  format: ConfigDriveFormat;
  /** ISO volume id or FAT boot-sector label, trailing spaces removed. */
  label: string;
  /** The size the filesystem claims (ISO volume space, FAT total sectors), in bytes. */
  fsBytes: number;
  /** ISO logical block size or FAT bytes per sector. */
  blockSize: number;
}

/** The primary volume descriptor sits in logical sector 16 of 2048 bytes (ECMA-119 §6.2). */
export const ISO_PVD_OFFSET = 32768;
export const ISO_DESCRIPTOR_BYTES = 2048;
const FAT_BOOT_BYTES = 512;

/** cloud-init, Ignition and glean accept `config-2` and `CONFIG-2`; compare case-insensitively. */
export function isConfigDriveLabel(label: string | null | undefined): boolean {
  return typeof label === 'string' && label.trim().toLowerCase() === 'config-2';
}

// ECMA-119 §8.4: type 1, "CD001", version 1; volume id at 40..71, volume space size
// (both-endian u32) at 80, logical block size (both-endian u16) at 128.
export function parseIsoPrimaryDescriptor(pvd: Uint8Array): ImageProbe | null {
  const buf = Buffer.from(pvd.buffer, pvd.byteOffset, pvd.byteLength);
  if (buf.length < ISO_DESCRIPTOR_BYTES) return null;
  if (buf[0] !== 1 || buf.toString('latin1', 1, 6) !== 'CD001' || buf[6] !== 1) return null;
  const blockSize = buf.readUInt16LE(128);
  if (blockSize === 0 || (blockSize & (blockSize - 1)) !== 0) return null;
  return {
    format: 'iso9660',
    label: buf.toString('latin1', 40, 72).replace(/[\s\0]+$/, ''),
    fsBytes: buf.readUInt32LE(80) * blockSize,
    blockSize,
  };
}

// Microsoft FAT spec: 0x55AA at 510, bytes per sector at 11; FAT32 (16-bit sectors-per-FAT
// is 0) keeps the extended boot signature 0x29 at 66 and the label at 71, FAT12/16 at 38/43.
export function parseFatBootSector(boot: Uint8Array): ImageProbe | null {
  const buf = Buffer.from(boot.buffer, boot.byteOffset, boot.byteLength);
  if (buf.length < FAT_BOOT_BYTES || buf[510] !== 0x55 || buf[511] !== 0xaa) return null;
  const blockSize = buf.readUInt16LE(11);
  if (![512, 1024, 2048, 4096].includes(blockSize)) return null;
  const fat32 = buf.readUInt16LE(22) === 0;
  if (buf.toString('latin1', fat32 ? 82 : 54, fat32 ? 85 : 57) !== 'FAT') return null;
  const hasLabel = buf[fat32 ? 66 : 38] === 0x29;
  const totalSectors = buf.readUInt16LE(19) || buf.readUInt32LE(32);
  const label = hasLabel ? buf.toString('latin1', fat32 ? 71 : 43, fat32 ? 82 : 54).replace(/[\s\0]+$/, '') : '';
  return { format: 'vfat', label: label === 'NO NAME' ? '' : label, fsBytes: totalSectors * blockSize, blockSize };
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

/** Probe an open image or block device: ISO 9660 first, then FAT. */
export async function probeHandle(handle: FileHandle): Promise<ImageProbe | null> {
  const iso = parseIsoPrimaryDescriptor(await readAt(handle, ISO_PVD_OFFSET, ISO_DESCRIPTOR_BYTES));
  if (iso) return iso;
  return parseFatBootSector(await readAt(handle, 0, FAT_BOOT_BYTES));
}

/** Probe a file or block device by path (opened read-only). */
export async function probeImage(path: string): Promise<ImageProbe | null> {
  const handle = await open(path, 'r');
  try {
    return await probeHandle(handle);
  } finally {
    await handle.close();
  }
}

