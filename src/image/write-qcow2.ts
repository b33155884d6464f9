/**
 * A qcow2 image onto the target: `qemu-img convert` needs random access, so the decompressed
 * image is first copied to a temporary file (./qcow2.ts says where and how much room it needs),
 * verified, then converted to raw onto the target and fsynced.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { WriteJob } from './job.ts';
import { qemuImgConvert, qemuImgInfo, statfsFreeSpace, tempSpaceError, TEMP_RESERVE_BYTES, type FreeSpace } from './qcow2.ts';
import { syncPath } from './sync.ts';
import { tooLarge, type TargetInfo } from './target.ts';
import { writeChunks } from './write-chunks.ts';

export interface Qcow2Write {
  job: WriteJob;
  target: TargetInfo;
  /** The decompressed image. */
  body: AsyncIterable<Buffer>;
  /** Its size, when the source announced it. */
  knownSize: number | undefined;
  /** Checks the download once it is all in (before anything reaches the target). */
  verify(): void;
  runner: CommandRunner;
  signal?: AbortSignal | undefined;
  log?: Logger | undefined;
  tempDir?: string | undefined;
  freeSpace?: FreeSpace | undefined;
}

interface TempRoom {
  free: number;
  /** What the copy may take: the free space less TEMP_RESERVE_BYTES. */
  available: number;
}

// Room for the temporary copy; refused up front when the announced size does not fit.
async function tempRoom(w: Qcow2Write, tempDir: string): Promise<TempRoom> {
  const free = await (w.freeSpace ?? statfsFreeSpace)(tempDir);
  const available = Math.max(0, free - TEMP_RESERVE_BYTES);
  if (w.knownSize !== undefined && w.knownSize > available) throw tempSpaceError(tempDir, w.knownSize, free, true);
  return { free, available };
}

async function copyToTemp(w: Qcow2Write, copy: string, tempDir: string, room: TempRoom): Promise<void> {
  const { job } = w;
  w.log?.info({ temp_copy: copy, free_bytes: room.free }, 'qcow2 image: keeping a temporary copy for qemu-img convert');
  try {
    await writeChunks(copy, 'file', w.body, { clock: job.clock, onWritten: job.onWritten, limit: room.available, onLimit: (n) => tempSpaceError(tempDir, n, room.free, false) });
  } catch (err) {
    if (isAgentError(err) && err.details.errno === 'ENOSPC') throw tempSpaceError(tempDir, job.written, room.free, false);
    throw err;
  }
}

/** Copies, verifies, converts and fsyncs; returns the virtual (raw) size now on the target. */
export async function writeQcow2ViaTempCopy(w: Qcow2Write): Promise<number> {
  const { job, target } = w;
  const tempDir = w.tempDir ?? tmpdir();
  const room = await tempRoom(w, tempDir);
  const dir = await mkdtemp(join(tempDir, 'bootc-agent-qcow2-'));
  try {
    const copy = join(dir, 'image.qcow2');
    await copyToTemp(w, copy, tempDir, room);
    job.checkComplete();
    w.verify();
    const info = await qemuImgInfo(w.runner, copy, w.signal);
    if (target.sizeBytes !== undefined && info.virtualSize > target.sizeBytes) throw tooLarge(target, info.virtualSize, 'qcow2 virtual size');
    job.enter('convert');
    job.touched = true; // qemu-img creates/truncates a file target and writes a device in place
    await job.clock.time('convert', () => qemuImgConvert(w.runner, copy, target.path, w.signal));
    await job.clock.time('sync', () => syncPath(target.path, target.kind));
    job.written = info.virtualSize;
    return info.virtualSize;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
