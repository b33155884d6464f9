/**
 * qcow2 images cannot be streamed: `qemu-img convert` needs random access to the file. The
 * (decompressed) image is kept as a temporary file, then converted to raw onto the target. The
 * copy goes to `tempDir` (in a ramdisk that is RAM: /tmp) when it fits there, or — when memory
 * is short and the target is a disk — to a scratch area in the disk's own tail, beyond the
 * image's virtual size, which the conversion never reaches. Where it goes is decided from the
 * image's header (its virtual size) before a byte reaches the disk; when it fits nowhere the
 * deploy fails naming the numbers.
 * @module
 */
import { readFile, statfs } from 'node:fs/promises';
import { z } from 'zod';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { readMemAvailable, statStorage } from '../io/memory.ts';
import { MiB } from '../io/sizes.ts';

/** Space kept free in the temporary directory besides the image (logs, other state). */
export const TEMP_RESERVE_BYTES = 64 * MiB;

export type FreeSpace = (dir: string) => Promise<number>;

/** Where a qcow2 image's temporary copy may go: as the bootc step's `container_storage`. */
export type TempCopyMode = 'auto' | 'memory' | 'disk';
export const TEMP_COPY_MODES: readonly TempCopyMode[] = ['auto', 'memory', 'disk'];

/** Memory kept free for the agent and qemu-img when the temporary directory is in RAM. */
export const MEMORY_HEADROOM_BYTES = 256 * MiB;
/** Between the end of the converted image and the scratch area. */
export const SCRATCH_GAP_BYTES = 16 * MiB;
/** Left out at the disk's end: its backup GPT is never inside the scratch. */
export const SCRATCH_TAIL_BYTES = 2 * MiB;
/** The smallest xfs mkfs.xfs makes (300 MB), rounded up. */
export const SCRATCH_MIN_BYTES = 320 * MiB;

/**
 * Room for the copy in `dir`: its free space, and when it is in memory (tmpfs, ramfs) no more
 * than the memory available less MEMORY_HEADROOM_BYTES.
 */
export async function memoryRoom(dir: string, meminfo?: () => Promise<string>): Promise<{ free: number; memoryBacked: boolean; memAvailable?: number }> {
  const { freeBytes: free, memoryBacked } = await statStorage(dir);
  if (!memoryBacked) return { free, memoryBacked: false };
  const memAvailable = await readMemAvailable(meminfo);
  return { free: Math.min(free, Math.max(0, memAvailable - MEMORY_HEADROOM_BYTES)), memoryBacked: true, memAvailable };
}

export interface Qcow2Header {
  version: number;
  /** The raw size `qemu-img convert` writes from the start of the target. */
  virtualSize: number;
}

/** Bytes of the header parseQcow2Header reads. */
export const QCOW2_HEADER_BYTES = 32;

/**
 * The fixed part of a qcow2 header (big-endian: magic, version, backing file offset and size,
 * cluster bits, virtual size). An image with a backing file is refused: qemu-img would open
 * whatever file the image names.
 */
export function parseQcow2Header(head: Buffer, shownUrl: string): Qcow2Header {
  const unsupported = (why: string) => new AgentError('IMAGE_FORMAT_UNSUPPORTED', `The qcow2 image at ${shownUrl} ${why}`, { details: { url: shownUrl } });
  if (head.length < QCOW2_HEADER_BYTES || head.readUInt32BE(0) !== 0x514649fb) throw unsupported('has no complete qcow2 header');
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw unsupported(`has header version ${version} (qemu-img writes 2 and 3)`);
  if (head.readBigUInt64BE(8) !== 0n) throw unsupported('names a backing file: only self-contained images are written');
  const size = head.readBigUInt64BE(24);
  if (size === 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) throw unsupported(`declares a virtual size of ${size} bytes`);
  return { version, virtualSize: Number(size) };
}

export interface ScratchPlan {
  offsetBytes: number;
  sizeBytes: number;
}

/**
 * Where the copy goes on a disk of `diskBytes`: the converted image takes `[0, virtualSize)`,
 * then a 16 MiB gap, then the scratch, 1 MiB aligned, ending SCRATCH_TAIL_BYTES before the
 * disk's end. Sized for `copyBytes` (a tenth and 64 MiB more for xfs) when the size is known,
 * else all the room there is. Refused before the disk is touched when it does not fit.
 */
export function planQcow2Scratch(disk: string, diskBytes: number, virtualSize: number, copyBytes: number | undefined): ScratchPlan {
  const start = Math.ceil(virtualSize / MiB) * MiB + SCRATCH_GAP_BYTES;
  const end = Math.floor(diskBytes / MiB) * MiB - SCRATCH_TAIL_BYTES;
  const wanted = copyBytes === undefined ? SCRATCH_MIN_BYTES : Math.max(SCRATCH_MIN_BYTES, Math.ceil((copyBytes * 1.1 + 64 * MiB) / MiB) * MiB);
  if (end - start < wanted) {
    const mib = (n: number) => `${Math.ceil(n / MiB)} MiB`;
    throw new AgentError('IMAGE_SCRATCH_NO_SPACE', `The qcow2 image's temporary copy does not fit on ${disk} beside the image: the disk has ${mib(diskBytes)}, the image's virtual size takes ${mib(virtualSize)} and a ${mib(SCRATCH_GAP_BYTES)} gap, the copy needs a scratch area of ${copyBytes === undefined ? 'at least ' : ''}${mib(wanted)}`, {
      details: { disk, disk_bytes: diskBytes, virtual_size: virtualSize, copy_bytes: copyBytes ?? null, scratch_bytes_needed: wanted, scratch_bytes_free: Math.max(0, end - start), gap_bytes: SCRATCH_GAP_BYTES },
    });
  }
  const sizeBytes = copyBytes === undefined ? end - start : wanted;
  return { offsetBytes: end - sizeBytes, sizeBytes };
}

/** Bytes available to an unprivileged writer in `dir` (statfs `bavail × bsize`). */
export const statfsFreeSpace: FreeSpace = async (dir) => {
  const s = await statfs(dir);
  return Number(s.bavail) * Number(s.bsize);
};

export function tempSpaceError(dir: string, neededBytes: number, freeBytes: number, known: boolean): AgentError {
  const mib = (n: number) => `${Math.ceil(n / MiB)} MiB`;
  return new AgentError('IMAGE_TEMP_NO_SPACE',
    `The qcow2 image needs a temporary copy of ${known ? '' : 'at least '}${mib(neededBytes)} in ${dir} for qemu-img convert, but only ${mib(freeBytes)} is free there (${mib(TEMP_RESERVE_BYTES)} kept in reserve); use a raw image or give the ramdisk more memory`, {
      details: { temp_dir: dir, needed_bytes: neededBytes, needed_is_lower_bound: !known, free_bytes: freeBytes, reserve_bytes: TEMP_RESERVE_BYTES },
    });
}

/** The copy outgrew the scratch area made for it (its size was not announced, or was wrong). */
export function scratchSpaceError(disk: string, neededBytes: number, freeBytes: number): AgentError {
  return new AgentError('IMAGE_SCRATCH_NO_SPACE', `The qcow2 image's temporary copy outgrew the scratch area on ${disk}: at least ${Math.ceil(neededBytes / MiB)} MiB written, ${Math.ceil(freeBytes / MiB)} MiB was free there`, {
    details: { disk, needed_bytes: neededBytes, needed_is_lower_bound: true, free_bytes: freeBytes },
  });
}

/** disk mode asked for a target that is not a disk (a file written by `bootc-agent fetch`). */
export function scratchUnavailable(target: string): AgentError {
  return new AgentError('IMAGE_SCRATCH_NO_SPACE', `The qcow2 image's temporary copy was to go on a scratch area of the target, but ${target} is not a disk`, { details: { target } });
}

const QemuInfo = z.looseObject({ 'virtual-size': z.number().int().nonnegative(), format: z.string() });

/** `qemu-img info` of the temporary copy: its format and virtual (raw) size. */
export async function qemuImgInfo(runner: CommandRunner, path: string, signal?: AbortSignal): Promise<{ format: string; virtualSize: number }> {
  try {
    const { stdout } = await runner.run('qemu-img', ['info', '--output=json', '-f', 'qcow2', '--', path], { ...(signal ? { signal } : {}), timeoutMs: 120_000 });
    const info = QemuInfo.parse(JSON.parse(stdout));
    return { format: info.format, virtualSize: info['virtual-size'] };
  } catch (err) {
    if (isAgentError(err) && (err.code === 'CANCELLED' || err.code === 'COMMAND_NOT_FOUND')) throw err;
    throw new AgentError('IMAGE_WRITE_FAILED', `qemu-img cannot read the downloaded qcow2 image: ${(err as Error).message}`, {
      cause: err, details: isAgentError(err) ? { ...err.details } : {},
    });
  }
}

/** `qemu-img convert -f qcow2 -O raw SRC TARGET`; the caller fsyncs TARGET afterwards. */
export async function qemuImgConvert(runner: CommandRunner, source: string, target: string, signal?: AbortSignal): Promise<void> {
  try {
    await runner.run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', '--', source, target], signal ? { signal } : {});
  } catch (err) {
    if (isAgentError(err) && (err.code === 'CANCELLED' || err.code === 'COMMAND_NOT_FOUND')) throw err;
    throw new AgentError('IMAGE_WRITE_FAILED', `qemu-img convert to ${target} failed: ${(err as Error).message}`, {
      cause: err, details: isAgentError(err) ? { ...err.details } : {},
    });
  }
}
