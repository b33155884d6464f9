/**
 * Loop devices for tests: over a sparse file in a directory the test owns, attached with
 * `losetup --find --show`, detached by their own name (never `losetup -D`), with the kernel's
 * partition nodes dropped first.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const MiB = 1024 * 1024;

export interface LoopDevice {
  device: string;
  file: string;
  detach(): void;
}

/** A loop device over a sparse file of `sizeMiB` MiB in `dir`. */
export async function attachLoop(dir: string, sizeMiB: number): Promise<LoopDevice> {
  const file = join(dir, `loop-${Date.now()}-${Math.random().toString(36).slice(2)}.img`);
  await writeFile(file, '');
  await truncate(file, sizeMiB * MiB);
  const device = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed ${device}`);
  let attached = true;
  return {
    device,
    file,
    detach() {
      if (!attached) return;
      attached = false;
      try {
        execFileSync('partx', ['-d', '--', device], { stdio: 'ignore' });
      } catch {
        // no partitions
      }
      execFileSync('losetup', ['-d', device]);
    },
  };
}

