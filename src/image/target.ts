/**
 * The write side: a block device or a regular file, written at explicit offsets with one write
 * in flight while the next block fills (two buffers, so memory stays constant and the network
 * keeps flowing during a write). Block devices are written O_DIRECT in 1 MiB blocks when they
 * allow it (else buffered, like files, in 1 MiB blocks). Files are written sparse (all-zero
 * blocks left as holes). Background fdatasyncs every SYNC_EVERY bytes overlap the writeback with
 * the download; `fsync` at the end; for block devices the kernel is then told to re-read the
 * partition table. zstd images can instead be written by `zstd` itself (writeZstdToTarget).
 * @module
 */
import { constants, readSync } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { unzstdToFd } from './decompress.ts';
import type { PhaseClock } from './timing.ts';

export const WRITE_BLOCK = 1024 * 1024;
/**
 * Block size of O_DIRECT device writes (two such buffers: one filling, one being written).
 * 1 MiB: as fast as 2 MiB here (npm run bench, raw) and 2 MiB less peak RSS.
 */
export const DIRECT_BLOCK = 1024 * 1024;
/**
 * Bytes between background `fdatasync`s while writing: the kernel starts writing back only at
 * its dirty thresholds (GBs on a large-RAM host), so without them the whole image would be
 * flushed by the final fsync, after the download ended. One at a time, never awaited by the
 * writes, so the writeback overlaps the download.
 */
export const SYNC_EVERY = 128 * 1024 * 1024;
const ZERO_BLOCK = Buffer.alloc(WRITE_BLOCK);

export interface TargetInfo {
  path: string;
  kind: 'block' | 'file';
  /** Block devices: their size; files: undefined (they grow). */
  sizeBytes?: number | undefined;
}

/** Whether `path` is a block device, and how large it is (via `blockdev --getsize64`). */
export async function describeTarget(path: string, runner: CommandRunner, signal?: AbortSignal): Promise<TargetInfo> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new AgentError('IMAGE_WRITE_FAILED', `Cannot stat the target ${path}: ${err.message}`, { cause: err, details: { target: path } });
  });
  if (!info?.isBlockDevice()) {
    if (info && !info.isFile()) throw new AgentError('IMAGE_WRITE_FAILED', `The target ${path} is neither a block device nor a regular file`, { details: { target: path } });
    return { path, kind: 'file' };
  }
  const { stdout } = await runner.run('blockdev', ['--getsize64', path], signal ? { signal } : {});
  const size = Number(stdout.trim());
  if (!Number.isSafeInteger(size) || size <= 0) throw new AgentError('BLOCK_DEVICE_ERROR', `blockdev --getsize64 ${path} printed ${JSON.stringify(stdout.trim())}`);
  return { path, kind: 'block', sizeBytes: size };
}

export function tooLarge(target: TargetInfo, imageBytes: number, what: string): AgentError {
  return new AgentError('IMAGE_TOO_LARGE', `The image (${what} ${imageBytes} bytes) does not fit on ${target.path} (${target.sizeBytes} bytes)`, {
    details: { target: target.path, image_bytes: imageBytes, target_bytes: target.sizeBytes, size_kind: what },
  });
}

function writeError(path: string, err: unknown): unknown {
  if (isAgentError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  return new AgentError('IMAGE_WRITE_FAILED', `Writing to ${path} failed: ${e?.message ?? String(err)}`, { cause: err, details: { target: path, ...(e?.code ? { errno: e.code } : {}) } });
}

export interface WriteChunksOptions {
  clock: PhaseClock;
  /** Bytes past which writing fails (device size, or free temp space). */
  limit?: number | undefined;
  onLimit?: ((bytes: number) => AgentError) | undefined;
  onWritten?: ((bytes: number) => void) | undefined;
  /** Called once, before the first byte is written (marks the target as touched). */
  onFirstWrite?: (() => void) | undefined;
  /** Block devices: write with O_DIRECT when the device allows it (default true). */
  direct?: boolean | undefined;
  /** Bytes between background fdatasyncs (default SYNC_EVERY; Infinity: only the final fsync). */
  syncEvery?: number | undefined;
}

// O_DIRECT needs the memory, the length and the device offset aligned (the logical block size,
// at most 4096). Node cannot ask for an aligned buffer, so a block is allocated 4 KiB larger and
// the first offset inside it that an O_DIRECT read of one 4 KiB block accepts is used (a failed
// O_DIRECT transfer is EINVAL before any I/O; reading block 0 changes nothing).
const DIRECT_ALIGN = 4096;

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

interface DirectTarget {
  handle: FileHandle;
  buffers: Buffer[];
}

// A block device opened O_DIRECT with two aligned blocks, or undefined (then: buffered writes).
async function openDirect(path: string, size: number): Promise<DirectTarget | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_DIRECT);
  } catch {
    return undefined;
  }
  const a = alignedBlock(handle.fd, size);
  const b = a && alignedBlock(handle.fd, size);
  if (!a || !b) {
    await handle.close().catch(() => undefined);
    return undefined;
  }
  return { handle, buffers: [a, b] };
}

/**
 * Writes `chunks` to `path` from offset 0 and fsyncs. Files are created or truncated; block
 * devices are opened without truncation. Returns the number of bytes written.
 *
 * Block devices are written with O_DIRECT in 1 MiB blocks when the device allows it: the bytes
 * go from our buffer to the device without passing through the page cache (no copy, no page
 * cache to fill and flush: on this kind of job, filling it is most of the kernel's CPU time);
 * a last partial block's unaligned tail goes through a second, buffered descriptor.
 */
export async function writeChunks(path: string, kind: 'block' | 'file', chunks: AsyncIterable<Buffer>, options: WriteChunksOptions): Promise<number> {
  let handle: FileHandle;
  try {
    handle = await open(path, kind === 'block' ? 'r+' : 'w', 0o644);
  } catch (err) {
    throw writeError(path, err);
  }
  const direct = kind === 'block' && options.direct !== false ? await openDirect(path, DIRECT_BLOCK) : undefined;
  const blockSize = direct ? DIRECT_BLOCK : WRITE_BLOCK;
  const { clock } = options;
  let buffers = direct ? direct.buffers : [Buffer.allocUnsafe(WRITE_BLOCK), Buffer.allocUnsafe(WRITE_BLOCK)];
  let fill = 0;
  let position = 0;
  let pending: Promise<unknown> | undefined;
  let started = false;
  let syncing: Promise<void> | undefined;
  let syncError: unknown;
  let synced = 0;
  const syncHandle = direct?.handle ?? handle;
  const backgroundSync = (at: number) => {
    if (syncing || syncError || at - synced < (options.syncEvery ?? SYNC_EVERY)) return;
    synced = at;
    syncing = syncHandle.datasync().then(() => { syncing = undefined; }, (err: unknown) => {
      syncError = err;
      syncing = undefined;
    });
  };
  const writeAll = async (target: FileHandle, block: Buffer, from: number, to: number, at: number) => {
    let done = from;
    while (done < to) {
      const { bytesWritten } = await target.write(block, done, to - done, at + done);
      if (bytesWritten === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      done += bytesWritten;
    }
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
    const at = position;
    // Files start empty (truncated): an all-zero block can stay a hole. Devices get every byte.
    if (kind === 'file' && length === WRITE_BLOCK && block.equals(ZERO_BLOCK)) {
      position += length;
      fill = 0;
      options.onWritten?.(position);
      return;
    }
    pending = (async () => {
      if (direct) {
        // Whole aligned blocks O_DIRECT; only the very last block can have an unaligned tail.
        const aligned = length - (length % DIRECT_ALIGN);
        if (aligned > 0) await writeAll(direct.handle, block, 0, aligned, at);
        if (aligned < length) await writeAll(handle, block, aligned, length, at);
      } else {
        await writeAll(handle, block, 0, length, at);
      }
      options.onWritten?.(at + length);
      backgroundSync(at + length);
    })();
    pending.catch(() => undefined);
    position += length;
    buffers = [buffers[1]!, block];
    fill = 0;
  };

  try {
    for await (const chunk of chunks) {
      let offset = 0;
      if (options.limit !== undefined && position + fill + chunk.length > options.limit) {
        throw options.onLimit?.(position + fill + chunk.length) ?? new AgentError('IMAGE_WRITE_FAILED', `More than ${options.limit} bytes for ${path}`);
      }
      while (offset < chunk.length) {
        const n = Math.min(chunk.length - offset, blockSize - fill);
        chunk.copy(buffers[0]!, fill, offset, offset + n);
        fill += n;
        offset += n;
        if (fill === blockSize) await flush();
      }
    }
    await flush();
    if (pending) await clock.time('disk', () => pending!);
    if (kind === 'file') await handle.truncate(position);
    await clock.time('sync', async () => {
      await syncing;
      if (syncError) throw syncError;
      if (direct) await direct.handle.sync();
      await handle.sync();
    });
    return position;
  } catch (err) {
    await pending?.catch(() => undefined);
    await syncing;
    throw writeError(path, err);
  } finally {
    await direct?.handle.close().catch(() => undefined);
    await handle.close().catch(() => undefined);
  }
}

// The file offset of one of our fds (shared with a child that writes through it): Linux fdinfo.
async function fdPosition(fd: number): Promise<number | undefined> {
  const text = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => undefined);
  const m = text ? /^pos:\s+(\d+)/m.exec(text) : null;
  return m ? Number(m[1]) : undefined;
}

export interface WriteZstdOptions extends WriteChunksOptions {
  signal?: AbortSignal | undefined;
  zstdPath?: string | undefined;
}

/**
 * `zstd -dc` writing the decompressed image straight to `path` (its stdout is our fd on the
 * target): no decompressed byte passes through this process. Files are written sparse
 * (`--sparse`, the file was truncated), devices fully. Progress and the final size come from the
 * shared file offset; fsync at the end. Returns the number of bytes written.
 */
export async function writeZstdToTarget(path: string, kind: 'block' | 'file', compressed: AsyncIterable<Buffer>, options: WriteZstdOptions): Promise<number> {
  let handle: FileHandle;
  try {
    handle = await open(path, kind === 'block' ? 'r+' : 'w', 0o644);
  } catch (err) {
    throw writeError(path, err);
  }
  const { clock } = options;
  let timer: NodeJS.Timeout | undefined;
  let syncing: Promise<void> | undefined;
  let syncError: unknown;
  let synced = 0;
  try {
    options.onFirstWrite?.();
    // zstd writes; we watch the shared offset for progress and flush behind it (see SYNC_EVERY).
    const fd = handle.fd;
    const syncEvery = options.syncEvery ?? SYNC_EVERY;
    timer = setInterval(() => {
      void fdPosition(fd).then((pos) => {
        if (pos === undefined) return;
        options.onWritten?.(pos);
        if (syncing || syncError || pos - synced < syncEvery) return;
        synced = pos;
        syncing = handle.datasync().then(() => { syncing = undefined; }, (err: unknown) => {
          syncError = err;
          syncing = undefined;
        });
      });
    }, 250);
    timer.unref();
    try {
      await unzstdToFd(compressed, handle.fd, {
        sparse: kind === 'file', signal: options.signal, zstdPath: options.zstdPath,
        onWait: (ms) => clock.add('decompress', ms),
      });
    } catch (err) {
      const pos = await fdPosition(handle.fd);
      if (isAgentError(err) && err.details['errno'] === 'ENOSPC' && options.limit !== undefined && pos !== undefined && pos >= options.limit - WRITE_BLOCK) {
        throw options.onLimit?.(pos) ?? err;
      }
      throw err;
    }
    clearInterval(timer);
    const position = (await fdPosition(handle.fd)) ?? (await handle.stat()).size;
    if (options.limit !== undefined && position > options.limit) throw options.onLimit?.(position) ?? new AgentError('IMAGE_WRITE_FAILED', `More than ${options.limit} bytes for ${path}`);
    options.onWritten?.(position);
    await clock.time('sync', async () => {
      await syncing;
      if (syncError) throw syncError;
      await handle.sync();
    });
    return position;
  } catch (err) {
    throw writeError(path, err);
  } finally {
    clearInterval(timer);
    await syncing;
    await handle.close().catch(() => undefined);
  }
}

/** fsync a path (after `qemu-img convert` wrote it). */
export async function syncPath(path: string, kind: 'block' | 'file'): Promise<void> {
  const handle = await open(path, kind === 'block' ? 'r+' : 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Tell the kernel about the partitions the image brought. `partprobe` (libparted: BLKPG per
 * partition, so it works without kernel partition-table parsers and on loop devices) removes
 * stale partitions and adds the new ones. If it fails, `partx -d` then `partx -a` (not
 * `partx -u`, which can leave an old overlapping partition behind). Then `udevadm settle` where
 * udev exists. All best effort: a disk image without a partition table is valid.
 */
export async function rereadPartitions(runner: CommandRunner, device: string, log?: Logger, signal?: AbortSignal): Promise<string[]> {
  const done: string[] = [];
  const attempt = async (file: string, args: string[]): Promise<boolean> => {
    try {
      await runner.run(file, args, { ...(signal ? { signal } : {}), timeoutMs: 60_000 });
      done.push(file === 'partx' ? `partx ${args[0]}` : file);
      return true;
    } catch (err) {
      if (isAgentError(err) && err.code === 'CANCELLED') throw err;
      log?.debug({ err, argv: [file, ...args] }, 'partition re-read step failed (ignored)');
      return false;
    }
  };
  if (!(await attempt('partprobe', ['--', device]))) {
    await attempt('partx', ['-d', '--', device]);
    await attempt('partx', ['-a', '--', device]);
  }
  await attempt('udevadm', ['settle', '--timeout=30']);
  return done;
}
