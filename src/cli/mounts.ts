/**
 * A guard for the fetch CLI: never overwrite a block device that is (or whose partitions are)
 * mounted. Reads /proc/self/mounts; files are never considered mounted.
 * @module
 */
import { readFile, realpath, stat } from 'node:fs/promises';

/** True when `path` is a block device that is mounted, or one of its partitions is. */
export async function isMounted(path: string, mountsFile = '/proc/self/mounts'): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isBlockDevice()) return false;
  const device = await realpath(path);
  const text = await readFile(mountsFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const source = line.split(' ', 1)[0] ?? '';
    if (!source.startsWith('/dev/')) continue;
    const real = await realpath(source).catch(() => source);
    if (real === device || (real.startsWith(device) && /^p?\d+$/.test(real.slice(device.length)))) return true;
  }
  return false;
}
