/**
 * Loop devices for tests: over a sparse file in a directory the test owns, attached with
 * `losetup --find --show`, detached by their own name (never `losetup -D`), with the kernel's
 * partition nodes dropped first.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { probe, sh } from './tools.ts';

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


/** A recognisable two-partition table ("marker-a", "marker-b") the failure tests expect to stay or to disappear. */
export function layMarkerTable(dev: string): void {
  sh('sgdisk', ['--zap-all', dev]);
  sh('sgdisk', ['-n1:0:+64M', '-c1:marker-a', '-n2:0:+64M', '-c2:marker-b', dev]);
  // not `partx -u`: it fails (EBUSY) when new partitions overlap old ones with higher numbers
  probe('partx', ['-d', '--', dev]);
  probe('partx', ['-a', '--', dev]);
}

/** The partition lines of `sgdisk -p` (none on a wiped disk). */
export function partitionLines(dev: string): string[] {
  return probe('sgdisk', ['-p', dev]).stdout.split('\n').filter((l) => /^\s+\d+\s+\d+\s+\d+/.test(l));
}
