/**
 * Telling the kernel about the partitions an image brought, once it is on a block device.
 * @module
 */
import { isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';

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
