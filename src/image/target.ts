/**
 * The write side: a block device or a regular file, written at explicit offsets in 1 MiB
 * blocks with one write in flight while the next block fills (two buffers, so memory stays
 * constant and the network keeps flowing during a write). Files are written sparse (all-zero
 * blocks left as holes). `fsync` at the end; for block devices the kernel is then told to
 * re-read the partition table.
 * @module
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { PhaseClock } from './timing.ts';

export const WRITE_BLOCK = 1024 * 1024;
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
}

/**
 * Writes `chunks` to `path` from offset 0 and fsyncs. Files are created or truncated; block
 * devices are opened without truncation. Returns the number of bytes written.
 */
export async function writeChunks(path: string, kind: 'block' | 'file', chunks: AsyncIterable<Buffer>, options: WriteChunksOptions): Promise<number> {
  let handle: FileHandle;
  try {
    handle = await open(path, kind === 'block' ? 'r+' : 'w', 0o644);
  } catch (err) {
    throw writeError(path, err);
  }
  const { clock } = options;
  let buffers = [Buffer.allocUnsafe(WRITE_BLOCK), Buffer.allocUnsafe(WRITE_BLOCK)];
  let fill = 0;
  let position = 0;
  let pending: Promise<unknown> | undefined;
  let started = false;

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
      let done = 0;
      while (done < length) {
        const { bytesWritten } = await handle.write(block, done, length - done, at + done);
        if (bytesWritten === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        done += bytesWritten;
      }
      options.onWritten?.(at + length);
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
        const n = Math.min(chunk.length - offset, WRITE_BLOCK - fill);
        chunk.copy(buffers[0]!, fill, offset, offset + n);
        fill += n;
        offset += n;
        if (fill === WRITE_BLOCK) await flush();
      }
    }
    await flush();
    if (pending) await clock.time('disk', () => pending!);
    if (kind === 'file') await handle.truncate(position);
    await clock.time('sync', () => handle.sync());
    return position;
  } catch (err) {
    await pending?.catch(() => undefined);
    throw writeError(path, err);
  } finally {
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
