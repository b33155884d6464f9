/**
 * O_DIRECT block-device writes: the bytes go from our buffer to the device without passing
 * through the page cache (no copy, no page cache to fill and flush: on this kind of job, filling
 * it is most of the kernel's CPU time). O_DIRECT needs the memory, the length and the device
 * offset aligned to the logical block size (at most 4096).
 * @module
 */
import { constants, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { KiB, MiB } from '../io/sizes.ts';

/**
 * Block size of O_DIRECT device writes: large enough to keep the device busy, small enough that
 * the buffers cost little memory (figures in docs/benchmarks.md).
 */
export const DIRECT_BLOCK = MiB;
/**
 * Blocks of a writer: one filling while the others are being written. An O_DIRECT write
 * returns only once the device has the data, so a single one in flight leaves the device idle
 * while the next block fills, and the pipeline waits on each write in turn.
 */
export const WRITE_BUFFERS = 3;
/** Alignment O_DIRECT transfers get here: the largest logical block size. */
export const DIRECT_ALIGN = 4 * KiB;

// Node cannot ask for an aligned buffer, so a block is allocated DIRECT_ALIGN larger and the
// first offset inside it that an O_DIRECT read of one aligned block accepts is used (a failed
// O_DIRECT transfer is EINVAL before any I/O; reading block 0 changes nothing).
function alignedBlock(fd: number, size: number): Buffer | undefined {
  const raw = Buffer.allocUnsafeSlow(size + DIRECT_ALIGN);
  for (let k = 0; k < DIRECT_ALIGN; k += 16) {
    try {
      readSync(fd, raw, k, DIRECT_ALIGN, 0);
      return raw.subarray(k, k + size);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') return undefined;
    }
  }
  return undefined;
}

export interface DirectTarget {
  handle: FileHandle;
  /** WRITE_BUFFERS aligned blocks of `size` bytes. */
  buffers: Buffer[];
}

/** A block device opened O_DIRECT with WRITE_BUFFERS aligned blocks, or undefined (then: buffered writes). */
export async function openDirect(path: string, size: number = DIRECT_BLOCK): Promise<DirectTarget | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_DIRECT);
  } catch {
    return undefined;
  }
  const buffers: Buffer[] = [];
  for (let i = 0; i < WRITE_BUFFERS; i++) {
    const block = alignedBlock(handle.fd, size);
    if (!block) {
      await handle.close().catch(() => undefined);
      return undefined;
    }
    buffers.push(block);
  }
  return { handle, buffers };
}
