/**
 * Writing a config drive image byte for byte onto its partition (what IPA does with `dd`), then
 * verifying it by reading it back: no mount, since iso9660 and vfat may not be mountable here.
 * @module
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { MiB } from '../io/sizes.ts';
import type { Logger } from '../log/index.ts';
import { isConfigDriveLabel, probeHandle, type ConfigDriveFormat, type ImageProbe } from './probe.ts';

export interface WriteDeps {
  runner: CommandRunner;
  signal?: AbortSignal | undefined;
  log: Logger;
}

/** The image to write: a validated file (see `loadConfigDrive`). */
export interface ImageFile extends ImageProbe {
  path: string;
  size: number;
}

/** Where to write it: a partition node and its size in bytes. */
export interface TargetPartition {
  path: string;
  size: number;
}

export interface WrittenConfigDrive {
  format: ConfigDriveFormat;
  /** Bytes written (raw image) or copied (files of a rebuilt vfat). */
  bytes: number;
  label: string;
}

const CHUNK = MiB;

function writeFailed(message: string, partition: string, cause?: unknown): AgentError {
  if (isAgentError(cause) && cause.code === 'CANCELLED') return cause;
  const reason = cause === undefined ? '' : `: ${cause instanceof Error ? cause.message : String(cause)}`;
  return new AgentError('CONFIGDRIVE_WRITE_FAILED', `${message}${reason}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { partition, ...(isAgentError(cause) ? cause.details : {}) },
  });
}

/** Remove stale filesystem signatures (an old root fs, a previous config drive) first. */
export async function wipeSignatures(partition: string, deps: WriteDeps): Promise<void> {
  try {
    await deps.runner.run('wipefs', ['--all', '--force', '--', partition], { signal: deps.signal });
  } catch (err) {
    throw writeFailed(`Wiping old signatures on ${partition} failed`, partition, err);
  }
}

async function hashRange(handle: FileHandle, length: number, signal: AbortSignal | undefined): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  for (let pos = 0; pos < length;) {
    signal?.throwIfAborted();
    const { bytesRead } = await handle.read(buf, 0, Math.min(CHUNK, length - pos), pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash.digest('hex');
}

// Copy in 1 MiB chunks, zero the rest of the last MiB so no stale bytes sit right after the
// image, and fsync before anyone reads the partition.
async function copyImage(image: ImageFile, target: TargetPartition, signal: AbortSignal | undefined): Promise<void> {
  const src = await open(image.path, 'r');
  // O_EXCL on a block device fails with EBUSY while it is mounted or held exclusively.
  const dst = await open(target.path, constants.O_WRONLY | constants.O_EXCL);
  try {
    const buf = Buffer.alloc(CHUNK);
    let pos = 0;
    while (pos < image.size) {
      signal?.throwIfAborted();
      const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, image.size - pos), pos);
      if (bytesRead === 0) throw new Error(`the image ended at byte ${pos}, expected ${image.size}`);
      await dst.write(buf, 0, bytesRead, pos);
      pos += bytesRead;
    }
    const padEnd = Math.min(target.size, Math.ceil(pos / MiB) * MiB);
    if (padEnd > pos) await dst.write(Buffer.alloc(padEnd - pos), 0, padEnd - pos, pos);
    await dst.sync();
  } finally {
    await Promise.all([src.close(), dst.close()]);
  }
}

/** Read the partition back: same bytes as the image, and a config-2 filesystem label. */
export async function verifyRawWrite(image: ImageFile, target: TargetPartition, signal?: AbortSignal): Promise<ImageProbe> {
  const [src, dst] = await Promise.all([open(image.path, 'r'), open(target.path, 'r')]);
  try {
    const probe = await probeHandle(dst);
    if (!probe || probe.format !== image.format || !isConfigDriveLabel(probe.label)) {
      const seen = probe ? `${probe.format} labelled ${JSON.stringify(probe.label)}` : 'no iso9660 or vfat filesystem';
      throw new Error(`read back ${seen}, expected ${image.format} labelled ${JSON.stringify(image.label)}`);
    }
    const [want, got] = await Promise.all([hashRange(src, image.size, signal), hashRange(dst, image.size, signal)]);
    if (want !== got) throw new Error(`the first ${image.size} bytes read back differ from the image (sha256 ${got} ≠ ${want})`);
    return probe;
  } finally {
    await Promise.all([src.close(), dst.close()]);
  }
}

/**
 * Write an ISO 9660 (or FAT) image as is and verify it.
 * @example
 * await writeRawConfigDrive(drive, { path: '/dev/sda4', size: 64 * MiB }, { runner, signal, log });
 */
export async function writeRawConfigDrive(image: ImageFile, target: TargetPartition, deps: WriteDeps): Promise<WrittenConfigDrive> {
  if (image.size > target.size) {
    throw new AgentError('CONFIGDRIVE_TOO_LARGE', `The config drive (${image.size} bytes) is larger than its partition ${target.path} (${target.size} bytes)`, {
      details: { partition: target.path, partition_bytes: target.size, size_bytes: image.size },
    });
  }
  await wipeSignatures(target.path, deps);
  try {
    await copyImage(image, target, deps.signal);
  } catch (err) {
    throw writeFailed(`Writing the config drive to ${target.path} failed`, target.path, deps.signal?.aborted ? cancelled(deps.signal, err) : err);
  }
  let probe: ImageProbe;
  try {
    probe = await verifyRawWrite(image, target, deps.signal);
  } catch (err) {
    throw writeFailed(`Verifying the config drive on ${target.path} failed`, target.path, deps.signal?.aborted ? cancelled(deps.signal, err) : err);
  }
  deps.log.info({ partition: target.path, bytes: image.size, format: probe.format, label: probe.label }, 'config drive written and verified');
  return { format: probe.format, bytes: image.size, label: probe.label };
}

export function cancelled(signal: AbortSignal | undefined, cause: unknown): AgentError {
  return new AgentError('CANCELLED', 'Writing the config drive was cancelled', { cause: signal?.reason ?? cause });
}
