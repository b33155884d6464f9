/**
 * qcow2 images cannot be streamed: `qemu-img convert` needs random access to the file. The
 * (decompressed) image is kept as a temporary file in `tempDir` (in a ramdisk that is RAM:
 * /tmp), then converted to raw onto the target. The copy is only attempted when it fits in
 * the free space there; otherwise the deploy fails naming the numbers.
 * @module
 */
import { statfs } from 'node:fs/promises';
import { z } from 'zod';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { MiB } from '../io/sizes.ts';

/** Space kept free in the temporary directory besides the image (logs, other state). */
export const TEMP_RESERVE_BYTES = 64 * MiB;

export type FreeSpace = (dir: string) => Promise<number>;

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
