/**
 * Writing a chunk stream to the target at explicit offsets, with several writes in flight while
 * the next block fills (a fixed set of buffers, so memory stays constant and the network keeps
 * flowing during the writes). Block devices are written O_DIRECT when they allow it (./direct.ts), else buffered,
 * like files; files are written sparse (all-zero blocks left as holes). Background fdatasyncs
 * (./sync.ts) overlap the writeback with the download; `fsync` at the end.
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { MiB } from '../io/sizes.ts';
import { DIRECT_ALIGN, DIRECT_BLOCK, openDirect, WRITE_BUFFERS, type DirectTarget } from './direct.ts';
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

// Fills one block while up to WRITE_BUFFERS − 1 others are being written; `position` is where
// the filling block goes. Writes complete in any order; progress and syncs follow them in order.
function blockWriter(kind: 'block' | 'file', handle: FileHandle, direct: DirectTarget | undefined, sync: BackgroundSync, options: WriteTargetOptions): BlockWriter {
  const { clock } = options;
  const blockSize = direct ? DIRECT_BLOCK : WRITE_BLOCK;
  const free = direct ? [...direct.buffers] : Array.from({ length: WRITE_BUFFERS }, () => Buffer.allocUnsafe(WRITE_BLOCK));
  let block = free.pop()!;
  let fill = 0;
  let position = 0;
  const inFlight: { done: Promise<void>; block: Buffer; end: number; finished: boolean }[] = [];
  let reported = 0;
  let started = false;

  const write = async (data: Buffer, length: number, at: number) => {
    if (direct) {
      // Whole aligned blocks O_DIRECT; only the very last block can have an unaligned tail,
      // which goes through the buffered descriptor.
      const aligned = length - (length % DIRECT_ALIGN);
      if (aligned > 0) await writeAll(direct.handle, data, 0, aligned, at);
      if (aligned < length) await writeAll(handle, data, aligned, length, at);
    } else {
      await writeAll(handle, data, 0, length, at);
    }
  };
  // As each write finishes: the target is written up to the end of the last of the writes
  // that finished in order (so a failure reports what really reached it).
  const report = () => {
    let end = reported;
    for (const w of inFlight) {
      if (!w.finished) break;
      end = w.end;
    }
    if (end <= reported) return;
    reported = end;
    options.onWritten?.(end);
    sync.at(end);
  };
  // The oldest write: waited for, its block free again.
  const retireOldest = async (): Promise<void> => {
    const oldest = inFlight[0]!;
    await clock.time('disk', () => oldest.done);
    report();
    inFlight.shift();
    free.push(oldest.block);
  };
  const flush = async (): Promise<void> => {
    if (fill === 0) return;
    if (!started) {
      started = true;
      options.onFirstWrite?.();
    }
    const length = fill;
    // Files start empty (truncated): an all-zero block can stay a hole. Devices get every byte.
    if (kind === 'file' && length === WRITE_BLOCK && block.equals(ZERO_BLOCK)) {
      position += length;
      fill = 0;
      if (inFlight.length === 0) {
        reported = position;
        options.onWritten?.(position);
      }
      return;
    }
    const entry = { done: write(block, length, position), block, end: position + length, finished: false };
    entry.done.then(() => {
      entry.finished = true;
      report();
    }, () => undefined);
    position += length;
    inFlight.push(entry);
    fill = 0;
    if (free.length === 0) await retireOldest();
    block = free.pop()!;
  };
  return {
    get taken() {
      return position + fill;
    },
    async add(chunk) {
      for (let offset = 0; offset < chunk.length;) {
        const n = Math.min(chunk.length - offset, blockSize - fill);
        chunk.copy(block, fill, offset, offset + n);
        fill += n;
        offset += n;
        if (fill === blockSize) await flush();
      }
    },
    async end() {
      await flush();
      while (inFlight.length > 0) await retireOldest();
      if (position > reported) options.onWritten?.(position);
      return position;
    },
    async settle() {
      await Promise.allSettled(inFlight.map((w) => w.done));
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
