/**
 * A fake sysfs holding disks and the partitions the kernel knows of them, which scripted partx
 * calls change the way BLKPG would: for tests of code that makes the kernel's partitions match
 * a table.
 * @module
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { partitionNodePath, type PartitionTable } from '../../src/disk/index.ts';

/** Partition number → start and size in 512-byte units, as sysfs counts. */
export type Geometry = Record<number, [start: number, size: number]>;

export interface FakeSysfs {
  sysRoot: string;
  /** Add disk `kname`, or replace the partitions the kernel knows of it. */
  set(kname: string, parts: Geometry): void;
  /** The partition entries of a disk, sorted. */
  names(kname: string): string[];
  remove(): void;
}

export function fakeSysfs(): FakeSysfs {
  const sysRoot = mkdtempSync(join(tmpdir(), 'fake-sysfs-'));
  const diskDir = (kname: string) => join(sysRoot, 'class/block', kname);
  return {
    sysRoot,
    set(kname, parts) {
      const dir = diskDir(kname);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'size'), '4194304\n');
      for (const [n, [start, size]] of Object.entries(parts)) {
        const part = join(dir, partitionNodePath(kname, Number(n)));
        mkdirSync(part);
        writeFileSync(join(part, 'start'), `${start}\n`);
        writeFileSync(join(part, 'size'), `${size}\n`);
      }
    },
    names: (kname) => readdirSync(diskDir(kname)).filter((e) => e.startsWith(kname)).sort(),
    remove: () => rmSync(sysRoot, { recursive: true, force: true }),
  };
}

/** The geometry `partx -a` gives the kernel for a table. */
export function geometryOf(table: PartitionTable): Geometry {
  const scale = table.sectorSize / 512;
  return Object.fromEntries(table.partitions.map((p) => [p.number, [p.start * scale, p.size * scale]]));
}
