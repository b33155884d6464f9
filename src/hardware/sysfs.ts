/**
 * Small readers for sysfs/procfs files: a missing or unreadable file is "unknown" (`null`),
 * never an error, because which attributes exist depends on the driver.
 * @module
 */
import { access, readFile, readlink, realpath } from 'node:fs/promises';
import { basename } from 'node:path';

export async function readTrimmed(path: string): Promise<string | null> {
  try {
    const value = (await readFile(path, 'utf8')).trim();
    return value === '' ? null : value;
  } catch {
    return null;
  }
}

export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The last component of a symlink's target (`…/drivers/virtio_net` → `virtio_net`). */
export async function linkBasename(path: string): Promise<string | null> {
  try {
    return basename(await readlink(path));
  } catch {
    return null;
  }
}

export async function resolvedPath(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch {
    return null;
  }
}
