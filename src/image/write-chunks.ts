/**
 * Writing a chunk stream to the target at explicit offsets, with one write in flight while the
 * next block fills (two buffers, so memory stays constant and the network keeps flowing during
 * a write). Block devices are written O_DIRECT when they allow it (./direct.ts), else buffered,
 * like files; files are written sparse (all-zero blocks left as holes). Background fdatasyncs
 * (./sync.ts) overlap the writeback with the download; `fsync` at the end.
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { MiB } from '../io/sizes.ts';
import { DIRECT_ALIGN, DIRECT_BLOCK, openDirect, type DirectTarget } from './direct.ts';
import { backgroundSync, type BackgroundSync } from './sync.ts';
import { openTarget, overLimit, writeError, type WriteTargetOptions } from './target.ts';

/** Block size of buffered writes (files, and devices that refuse O_DIRECT). */
export const WRITE_BLOCK = MiB;
const ZERO_BLOCK = Buffer.alloc(WRITE_BLOCK);

async function writeAll(target: FileHandle, block: Buffer, from: number, to: number, at: number): Promise<void> {
  let done = from;
  while (done < to) {
    const { bytesWritten } = await target.write(block, done, to - done, at + done);
    if (bytesWritten === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    done += bytesWritten;
  }
}

interface BlockWriter {
  /** Bytes taken so far (written, in flight or buffered). */
  readonly taken: number;
  add(chunk: Buffer): Promise<void>;
  /** Writes what is buffered and waits for the last write; returns the bytes written. */
  end(): Promise<number>;
  /** Waits for a write in flight, whatever its outcome (the write failed anyway). */
  settle(): Promise<void>;
}

// Fills one block while the other is being written; `position` is where the filling block goes.
function blockWriter(kind: 'block' | 'file', handle: FileHandle, direct: DirectTarget | undefined, sync: BackgroundSync, options: WriteTargetOptions): BlockWriter {
  const { clock } = options;
  const blockSize = direct ? DIRECT_BLOCK : WRITE_BLOCK;
  let buffers = direct ? direct.buffers : [Buffer.allocUnsafe(WRITE_BLOCK), Buffer.allocUnsafe(WRITE_BLOCK)];
  let fill = 0;
  let position = 0;
  let pending: Promise<unknown> | undefined;
  let started = false;

  const write = async (block: Buffer, length: number, at: number) => {
    if (direct) {
      // Whole aligned blocks O_DIRECT; only the very last block can have an unaligned tail,
      // which goes through the buffered descriptor.
      const aligned = length - (length % DIRECT_ALIGN);
      if (aligned > 0) await writeAll(direct.handle, block, 0, aligned, at);
      if (aligned < length) await writeAll(handle, block, aligned, length, at);
    } else {
      await writeAll(handle, block, 0, length, at);
    }
    options.onWritten?.(at + length);
    sync.at(at + length);
  };
  const flush = async (): Promise<void> => {
    if (fill === 0) return;
    if (pending) await clock.time('disk', () => pending!);
    if (!started) {
      started = true;
      options.onFirstWrite?.();
    }
    const block = buffers[0]!;
    const length = fill;
    // Files start empty (truncated): an all-zero block can stay a hole. Devices get every byte.
    if (kind === 'file' && length === WRITE_BLOCK && block.equals(ZERO_BLOCK)) {
      position += length;
      fill = 0;
      options.onWritten?.(position);
      return;
    }
    pending = write(block, length, position);
    pending.catch(() => undefined);
    position += length;
    buffers = [buffers[1]!, block];
    fill = 0;
  };
  return {
    get taken() {
      return position + fill;
    },
    async add(chunk) {
      for (let offset = 0; offset < chunk.length;) {
        const n = Math.min(chunk.length - offset, blockSize - fill);
        chunk.copy(buffers[0]!, fill, offset, offset + n);
        fill += n;
        offset += n;
        if (fill === blockSize) await flush();
      }
    },
    async end() {
      await flush();
      if (pending) await clock.time('disk', () => pending!);
      return position;
    },
    async settle() {
      await pending?.catch(() => undefined);
    },
  };
}

/**
 * Writes `chunks` to `path` from offset 0 and fsyncs. Files are created or truncated; block
 * devices are opened without truncation. Returns the number of bytes written.
 */
export async function writeChunks(path: string, kind: 'block' | 'file', chunks: AsyncIterable<Buffer>, options: WriteTargetOptions): Promise<number> {
  const handle = await openTarget(path, kind);
  const direct = kind === 'block' && options.direct !== false ? await openDirect(path, DIRECT_BLOCK) : undefined;
  const sync = backgroundSync(direct?.handle ?? handle, options.syncEvery);
  const writer = blockWriter(kind, handle, direct, sync, options);
  try {
    for await (const chunk of chunks) {
      if (options.limit !== undefined && writer.taken + chunk.length > options.limit) throw overLimit(path, options, writer.taken + chunk.length);
      await writer.add(chunk);
    }
    const position = await writer.end();
    if (kind === 'file') await handle.truncate(position);
    await options.clock.time('sync', async () => {
      await sync.finish();
      if (direct) await direct.handle.sync();
      await handle.sync();
    });
    return position;
  } catch (err) {
    await writer.settle();
    await sync.settle();
    throw writeError(path, err);
  } finally {
    await direct?.handle.close().catch(() => undefined);
    await handle.close().catch(() => undefined);
  }
}
