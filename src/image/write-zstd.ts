/**
 * A zstd image written by `zstd` itself: its stdout is our descriptor on the target, so no
 * decompressed byte passes through this process. We watch the shared file offset for progress
 * and flush behind it (./sync.ts).
 * @module
 */
import { readFile, type FileHandle } from 'node:fs/promises';
import { isAgentError } from '../errors.ts';
import { unzstdToFd } from './decompress.ts';
import { backgroundSync, type BackgroundSync } from './sync.ts';
import { openTarget, overLimit, writeError, type WriteTargetOptions } from './target.ts';
import { WRITE_BLOCK } from './write-chunks.ts';

const WATCH_INTERVAL_MS = 250;

export interface WriteZstdOptions extends WriteTargetOptions {
  signal?: AbortSignal | undefined;
  zstdPath?: string | undefined;
}

// The file offset of one of our fds (shared with a child that writes through it): Linux fdinfo.
async function fdPosition(fd: number): Promise<number | undefined> {
  const text = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => undefined);
  const m = text ? /^pos:\s+(\d+)/m.exec(text) : null;
  return m ? Number(m[1]) : undefined;
}

// Progress and background syncs from the offset zstd has reached; the returned function stops it.
function watchOffset(handle: FileHandle, sync: BackgroundSync, options: WriteTargetOptions): () => void {
  let watching = true;
  const timer = setInterval(() => {
    void fdPosition(handle.fd).then((pos) => {
      if (pos === undefined || !watching) return;
      options.onWritten?.(pos);
      sync.at(pos);
    });
  }, WATCH_INTERVAL_MS);
  timer.unref();
  return () => {
    watching = false;
    clearInterval(timer);
  };
}

// zstd's own "No space left" becomes the caller's limit error when the target is full at its limit.
async function runZstd(path: string, kind: 'block' | 'file', handle: FileHandle, compressed: AsyncIterable<Buffer>, options: WriteZstdOptions): Promise<void> {
  try {
    await unzstdToFd(compressed, handle.fd, {
      sparse: kind === 'file', signal: options.signal, zstdPath: options.zstdPath,
      onWait: (ms) => options.clock.add('decompress', ms),
    });
  } catch (err) {
    const pos = await fdPosition(handle.fd);
    if (isAgentError(err) && err.details['errno'] === 'ENOSPC' && options.limit !== undefined && pos !== undefined && pos >= options.limit - WRITE_BLOCK) {
      throw options.onLimit?.(pos) ?? err;
    }
    throw err;
  }
}

/**
 * `zstd -dc` writing the decompressed image straight to `path`. Files are written sparse
 * (`--sparse`, the file was truncated), devices fully. Progress and the final size come from the
 * shared file offset; fsync at the end. Returns the number of bytes written.
 */
export async function writeZstdToTarget(path: string, kind: 'block' | 'file', compressed: AsyncIterable<Buffer>, options: WriteZstdOptions): Promise<number> {
  const handle = await openTarget(path, kind);
  const sync = backgroundSync(handle, options.syncEvery);
  let stopWatching: (() => void) | undefined;
  try {
    options.onFirstWrite?.();
    stopWatching = watchOffset(handle, sync, options);
    await runZstd(path, kind, handle, compressed, options);
    stopWatching();
    const position = (await fdPosition(handle.fd)) ?? (await handle.stat()).size;
    if (options.limit !== undefined && position > options.limit) throw overLimit(path, options, position);
    options.onWritten?.(position);
    await options.clock.time('sync', async () => {
      await sync.finish();
      await handle.sync();
    });
    return position;
  } catch (err) {
    throw writeError(path, err);
  } finally {
    stopWatching?.();
    await sync.settle();
    await handle.close().catch(() => undefined);
  }
}
