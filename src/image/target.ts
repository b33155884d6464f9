/**
 * The target of an image write: a block device (written in place) or a regular file (created
 * or truncated), how it is opened for writing, the options both writers (./write-chunks.ts,
 * ./write-zstd.ts) share, and the errors a write ends with.
 * @module
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { PhaseClock } from './timing.ts';

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

export interface WriteTargetOptions {
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

/** The error of a write that went past `options.limit` (the caller's, when it gave one). */
export function overLimit(path: string, options: WriteTargetOptions, bytes: number): AgentError {
  return options.onLimit?.(bytes) ?? new AgentError('IMAGE_WRITE_FAILED', `More than ${options.limit} bytes for ${path}`);
}

/** What a failed write throws: our own errors as they are, anything else as IMAGE_WRITE_FAILED (errno kept). */
export function writeError(path: string, err: unknown): unknown {
  if (isAgentError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  return new AgentError('IMAGE_WRITE_FAILED', `Writing to ${path} failed: ${e?.message ?? String(err)}`, { cause: err, details: { target: path, ...(e?.code ? { errno: e.code } : {}) } });
}

/** Opens the target for writing: a file is created or truncated, a device opened as it is. */
export async function openTarget(path: string, kind: 'block' | 'file'): Promise<FileHandle> {
  try {
    return await open(path, kind === 'block' ? 'r+' : 'w', 0o644);
  } catch (err) {
    throw writeError(path, err);
  }
}
