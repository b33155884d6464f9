/**
 * A sparse disk image on a loop device of our own, for the demo and the deploy tests. Only the
 * device this module attached is ever detached.
 * @module
 */
import { closeSync, openSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandRunner } from '../../src/exec/index.ts';

export interface LoopDisk {
  /** e.g. /dev/loop3 */
  device: string;
  file: string;
  sizeBytes: number;
  /** Forgets the partition nodes and detaches the device (idempotent). */
  detach(): Promise<void>;
}

export async function createLoopDisk(runner: CommandRunner, dir: string, sizeBytes: number): Promise<LoopDisk> {
  const file = join(dir, 'disk.img');
  closeSync(openSync(file, 'w'));
  truncateSync(file, sizeBytes);
  const { stdout } = await runner.run('losetup', ['--find', '--show', '--', file], { timeoutMs: 30_000 });
  const device = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed ${JSON.stringify(stdout)}`);
  let attached = true;
  return {
    device,
    file,
    sizeBytes,
    async detach() {
      if (!attached) return;
      attached = false;
      // partx -d fails when the kernel knows no partitions: that is fine.
      await runner.run('partx', ['-d', '--', device], { timeoutMs: 30_000 }).catch(() => undefined);
      await runner.run('losetup', ['-d', device], { timeoutMs: 30_000 });
    },
  };
}

/** The partition table as sfdisk reports it, plus what blkid finds on each partition. */
export async function describeDisk(runner: CommandRunner, device: string): Promise<{
  label: string;
  sectorSize: number;
  partitions: Array<{ node: string; start: number; sizeBytes: number; type: string; name: string; fstype: string; fslabel: string }>;
}> {
  const { stdout } = await runner.run('sfdisk', ['--json', '--', device], { timeoutMs: 30_000 });
  const table = (JSON.parse(stdout) as { partitiontable: { label: string; sectorsize?: number; partitions?: Array<{ node: string; start: number; size: number; type: string; name?: string }> } }).partitiontable;
  const sector = table.sectorsize ?? 512;
  const partitions = [];
  for (const p of table.partitions ?? []) {
    let fstype = '';
    let fslabel = '';
    try {
      const probe = await runner.run('blkid', ['-p', '-o', 'export', '--', p.node], { timeoutMs: 30_000, okExitCodes: [0, 2] });
      const fields = Object.fromEntries(probe.stdout.trim().split('\n').filter(Boolean).map((l) => l.split('=', 2) as [string, string]));
      fstype = fields.TYPE ?? '';
      fslabel = fields.LABEL ?? '';
    } catch {
      // no node for this partition, or nothing recognisable on it
    }
    partitions.push({ node: p.node, start: p.start, sizeBytes: p.size * sector, type: p.type, name: p.name ?? '', fstype, fslabel });
  }
  return { label: table.label, sectorSize: sector, partitions };
}

/**
 * Mounts a partition read-only on a fresh directory under `dir` (xfs/ext4/btrfs only: this
 * kernel has no vfat or iso9660), returning the mount point and an idempotent unmount.
 */
export async function mountReadOnly(runner: CommandRunner, partition: string, dir: string): Promise<{ path: string; unmount(): Promise<void> }> {
  const path = join(dir, `mnt-${partition.split('/').pop()}`);
  await runner.run('mkdir', ['-p', '--', path]);
  await runner.run('mount', ['-o', 'ro', '--', partition, path], { timeoutMs: 60_000 });
  let mounted = true;
  return {
    path,
    async unmount() {
      if (!mounted) return;
      mounted = false;
      await runner.run('umount', ['--', path], { timeoutMs: 60_000 });
    },
  };
}
