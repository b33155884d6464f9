/**
 * A qcow2 image onto the target: `qemu-img convert` needs random access, so the decompressed
 * image is first copied to a temporary file, verified, then converted to raw onto the target and
 * fsynced. The copy goes to memory (the temporary directory) or, when memory is short and the
 * target is a disk, to a scratch area in the disk's tail beyond the image (./qcow2.ts decides
 * where and how much room it needs; src/disk/scratch.ts makes the scratch). A scratch is torn
 * down after the conversion, on every path.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createScratch, type Scratch } from '../disk/scratch.ts';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { peek, type Peeked } from '../io/peek.ts';
import type { Logger } from '../log/index.ts';
import type { WriteJob } from './job.ts';
import {
  memoryRoom, parseQcow2Header, planQcow2Scratch, qemuImgConvert, qemuImgInfo, scratchSpaceError, scratchUnavailable, statfsFreeSpace, tempSpaceError, QCOW2_HEADER_BYTES, TEMP_RESERVE_BYTES,
  type FreeSpace, type Qcow2Header, type TempCopyMode,
} from './qcow2.ts';
import { syncPath } from './sync.ts';
import { tooLarge, type TargetInfo } from './target.ts';
import type { TempCopy } from './types.ts';
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
  /** The URL as shown in messages. */
  shownUrl: string;
  signal?: AbortSignal | undefined;
  log?: Logger | undefined;
  tempDir?: string | undefined;
  freeSpace?: FreeSpace | undefined;
  /** Where the copy may go (default `memory`: the temporary directory only). */
  tempCopy?: { mode: TempCopyMode; chosenBy: 'option' | 'instance_info' } | undefined;
  /** Test seam: /proc/meminfo's text. */
  meminfo?: (() => Promise<string>) | undefined;
  /** Called before a scratch area writes the disk, then with its private directory once made. */
  onScratch?: ((event: { kind: 'writing' } | { kind: 'created'; dir: string }) => void) | undefined;
  /** Told where the copy goes (again once a scratch's loop device is known). */
  onTempCopy?: ((copy: TempCopy) => void) | undefined;
  /** Keeps the body's peek, for the caller to close whatever happens. */
  peeks?: Peeked[] | undefined;
}

interface TempRoom {
  free: number;
  /** What the copy may take: the free space less TEMP_RESERVE_BYTES. */
  available: number;
}

type Placement = { where: 'memory'; dir: string; room: TempRoom; report: TempCopy } | { where: 'disk'; report: TempCopy & { where: 'disk' } };

// Room in the temporary directory (in RAM: also bounded by the memory available).
async function tempRoom(w: Qcow2Write, tempDir: string): Promise<TempRoom> {
  const free = w.freeSpace ? await w.freeSpace(tempDir) : (await memoryRoom(tempDir, w.meminfo)).free;
  return { free, available: Math.max(0, free - TEMP_RESERVE_BYTES) };
}

/**
 * memory: the temporary directory, refused up front when the announced size does not fit.
 * disk: a scratch area on the target disk. auto: memory when the copy (its announced size, else
 * the virtual size) fits there, else disk — memory for a target that is not a disk.
 */
async function place(w: Qcow2Write, header: Qcow2Header): Promise<Placement> {
  const tempDir = w.tempDir ?? tmpdir();
  const mode = w.tempCopy?.mode ?? 'memory';
  const chosenBy = mode === 'auto' ? 'auto' : (w.tempCopy?.chosenBy ?? 'option');
  const disk = w.target.kind === 'block' && w.target.sizeBytes !== undefined ? { path: w.target.path, size: w.target.sizeBytes } : undefined;
  const onDisk = (reason?: string): Placement => {
    if (!disk) throw scratchUnavailable(w.target.path);
    const plan = planQcow2Scratch(disk.path, disk.size, header.virtualSize, w.knownSize);
    return { where: 'disk', report: { where: 'disk', chosen_by: chosenBy, ...(reason ? { reason } : {}), scratch_offset: plan.offsetBytes, scratch_bytes: plan.sizeBytes } };
  };
  if (mode === 'disk') return onDisk();
  const room = await tempRoom(w, tempDir);
  const needed = w.knownSize ?? (mode === 'auto' ? header.virtualSize : undefined);
  if (needed !== undefined && needed > room.available) {
    const refusal = tempSpaceError(tempDir, needed, room.free, w.knownSize !== undefined);
    if (mode === 'memory' || !disk) throw refusal;
    return onDisk(refusal.message);
  }
  return { where: 'memory', dir: tempDir, room, report: { where: 'memory', chosen_by: chosenBy, dir: tempDir, free_bytes: room.free } };
}

async function copyTo(w: Qcow2Write, copy: string, limit: number, onLimit: (n: number) => AgentError, onNoSpace: () => AgentError): Promise<void> {
  const { job } = w;
  try {
    await writeChunks(copy, 'file', w.body, { clock: job.clock, onWritten: job.onWritten, limit, onLimit });
  } catch (err) {
    if (isAgentError(err) && err.details.errno === 'ENOSPC') throw onNoSpace();
    throw err;
  }
}

// Verify, check the virtual size, convert onto the target and fsync it.
async function convert(w: Qcow2Write, copy: string, header: Qcow2Header): Promise<number> {
  const { job, target } = w;
  job.checkComplete();
  w.verify();
  const info = await qemuImgInfo(w.runner, copy, w.signal);
  if (info.virtualSize !== header.virtualSize) {
    throw new AgentError('IMAGE_WRITE_FAILED', `qemu-img reads a virtual size of ${info.virtualSize} bytes in the qcow2 image whose header said ${header.virtualSize}`, { details: { virtual_size: info.virtualSize, header_virtual_size: header.virtualSize } });
  }
  job.enter('convert');
  job.touched = true; // qemu-img creates/truncates a file target and writes a device in place
  await job.clock.time('convert', () => qemuImgConvert(w.runner, copy, target.path, w.signal));
  await job.clock.time('sync', () => syncPath(target.path, target.kind));
  job.written = info.virtualSize;
  return info.virtualSize;
}

async function viaMemory(w: Qcow2Write, header: Qcow2Header, placement: Placement & { where: 'memory' }): Promise<number> {
  const dir = await mkdtemp(join(placement.dir, 'bootc-agent-qcow2-'));
  try {
    const copy = join(dir, 'image.qcow2');
    w.log?.info({ temp_copy: copy, free_bytes: placement.room.free }, 'qcow2 image: keeping a temporary copy in memory for qemu-img convert');
    const noRoom = (n: number) => tempSpaceError(placement.dir, n, placement.room.free, false);
    await copyTo(w, copy, placement.room.available, noRoom, () => noRoom(w.job.written));
    return await convert(w, copy, header);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function viaScratch(w: Qcow2Write, header: Qcow2Header, placement: Placement & { where: 'disk' }): Promise<number> {
  const { job, target } = w;
  const { scratch_offset: offsetBytes, scratch_bytes: sizeBytes } = placement.report;
  // The scratch is a write to the disk: from here on a failure wipes it.
  job.touched = true;
  w.onScratch?.({ kind: 'writing' });
  const scratch: Scratch = await createScratch(w.runner, { disk: target.path, offsetBytes, sizeBytes, signal: w.signal, log: w.log });
  let result: number | undefined;
  try {
    w.onScratch?.({ kind: 'created', dir: dirname(scratch.mountpoint) });
    placement.report.loop_device = scratch.device;
    w.onTempCopy?.(placement.report);
    const copy = join(scratch.tmpDir, 'image.qcow2');
    w.log?.info({ temp_copy: copy, device: target.path, offset: offsetBytes, size: sizeBytes, loop_device: scratch.device }, 'qcow2 image: keeping a temporary copy on a scratch area in the disk\'s tail for qemu-img convert');
    const free = await statfsFreeSpace(scratch.tmpDir);
    const noRoom = (n: number) => scratchSpaceError(target.path, n, free);
    await copyTo(w, copy, free, noRoom, () => noRoom(job.written));
    result = await convert(w, copy, header);
  } finally {
    // A teardown failure fails the write (and the disk is wiped): no scratch may stay behind.
    const teardown = scratch.teardown();
    if (result === undefined) await teardown.catch((err: unknown) => w.log?.error({ err }, 'scratch teardown after a failed qcow2 write'));
    else await teardown;
  }
  return result;
}

/** Copies, verifies, converts and fsyncs; returns the virtual (raw) size now on the target. */
export async function writeQcow2ViaTempCopy(w: Qcow2Write): Promise<number> {
  const head = await peek(w.body, QCOW2_HEADER_BYTES);
  w.peeks?.push(head);
  const header = parseQcow2Header(head.head, w.shownUrl);
  if (w.target.sizeBytes !== undefined && header.virtualSize > w.target.sizeBytes) throw tooLarge(w.target, header.virtualSize, 'qcow2 virtual size');
  const placement = await place(w, header);
  w.onTempCopy?.(placement.report);
  const body = { ...w, body: head.all };
  return placement.where === 'memory' ? viaMemory(body, header, placement) : viaScratch(body, header, placement);
}
