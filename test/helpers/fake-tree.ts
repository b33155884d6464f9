/**
 * A throw-away directory tree of files, directories and symlinks: a fake `/sys` or `/proc`
 * for code that takes an injectable root.
 * @example
 * const tree = await createFakeTree({
 *   'class/net/eth0/address': '52:54:00:12:34:56\n',
 *   'class/net/eth0/device': { symlink: '../../../devices/pci0000:00/0000:00:03.0' },
 *   'firmware/efi': { dir: true },
 * });
 * await code({ sysRoot: tree.root });
 * await tree.cleanup();
 * @module
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type FakeTreeEntry = string | { symlink: string } | { dir: true };

export interface FakeTree {
  root: string;
  cleanup(): Promise<void>;
}

export async function createFakeTree(entries: Record<string, FakeTreeEntry>, prefix = 'fake-tree-'): Promise<FakeTree> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  for (const [relative, entry] of Object.entries(entries)) {
    const path = join(root, relative);
    if (typeof entry === 'string') {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, entry);
    } else if ('dir' in entry) {
      await mkdir(path, { recursive: true });
    } else {
      await mkdir(dirname(path), { recursive: true });
      await symlink(entry.symlink, path);
    }
  }
  return { root, cleanup: () => rm(root, { recursive: true, force: true }) };
}
