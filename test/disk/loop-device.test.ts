/**
 * Real block devices: a 64 MiB sparse file on a loop device (attached without partition
 * scanning, as on a kernel without partition-table parsers), partitioned with sgdisk and given
 * an ext4 filesystem, then listed, erased and wiped with the real runner. Needs root and the
 * util-linux/gdisk tools; skipped (with the reason) otherwise. Only the loop device this file
 * attached is ever touched, and it is detached in `after` even when a test fails.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eraseDevicesMetadata, listBlockDevices, wipeDisk } from '../../src/disk/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { probe, sh, toolMissing } from '../helpers/tools.ts';

const TOOLS = ['losetup', 'sgdisk', 'sfdisk', 'partx', 'mkfs.ext4', 'wipefs', 'blkid', 'lsblk', 'blockdev', 'dd'];

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: attaches and partitions a loop device';
  const missing = toolMissing(...TOOLS);
  if (missing) return missing;
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return undefined;
}

function kernelPartitions(dev: string): number[] {
  return [1, 2, 3, 4].filter((n) => existsSync(`/sys/class/block/${dev.split('/').pop()}p${n}`));
}

describe('real loop device', () => {
  const reason = skipReason();
  const runner = createExecaRunner();
  let dir: string | undefined;
  let attached: LoopDevice | undefined;
  let loop: string | undefined;

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'disk-loop-'));
    attached = await attachLoop(dir, 64);
    loop = attached.device;
    assert.match(loop, /^\/dev\/loop\d+$/);
    execFileSync('sgdisk', ['-n1:0:+8M', '-t1:ef00', '-c1:EFI', '-n2:0:0', '-t2:8300', '-c2:root', loop], { stdio: 'ignore' });
    // No partition-table parsers in this kernel: add the partition nodes by hand.
    execFileSync('partx', ['-u', '--', loop], { stdio: 'ignore' });
    execFileSync('mkfs.ext4', ['-q', '-L', 'victim', `${loop}p2`], { stdio: 'ignore' });
  });

  after(async () => {
    attached?.detach();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('listBlockDevices reports the loop device only with includeLoop', async (t) => {
    if (reason) return t.skip(reason);
    const withLoop = await listBlockDevices({ runner, includeLoop: true });
    const mine = withLoop.find((d) => d.name === loop);
    assert.ok(mine, `${loop} missing from ${withLoop.map((d) => d.name).join(', ')}`);
    assert.equal(mine.size, 64 * 2 ** 20);
    assert.equal(mine.type, 'loop');
    assert.equal(mine.logical_sectors, 512);
    assert.ok(!withLoop.some((d) => d.name.startsWith(`${loop}p`)), 'partitions are not disks');
    const withoutLoop = await listBlockDevices({ runner });
    assert.ok(!withoutLoop.some((d) => d.type === 'loop'));
  });

  test('eraseDevicesMetadata removes the partition table and the filesystem signature', async (t) => {
    if (reason || !loop) return t.skip(reason);
    const dev = loop;
    assert.match(probe('blkid', ['-p', `${dev}p2`]).stdout, /TYPE="ext4"/, 'setup: ext4 present before erasing');
    assert.match(probe('blkid', ['-p', dev]).stdout, /PTTYPE="gpt"/, 'setup: GPT present before erasing');

    const [device] = (await listBlockDevices({ runner, includeLoop: true })).filter((d) => d.name === dev);
    assert.ok(device);
    const result = await eraseDevicesMetadata({ runner, devices: [device] });
    assert.deepEqual(result, { erased: [dev], skipped: [] });

    assert.equal(probe('blkid', ['-p', dev]).status, 2, 'blkid finds nothing on the disk');
    assert.equal(probe('wipefs', ['--no-act', '--', dev]).stdout.trim(), '', 'no signatures left');
    const table = probe('sgdisk', ['-p', dev]).stdout;
    assert.match(table, /Number\s+Start \(sector\)/);
    assert.doesNotMatch(table, /^\s+\d+\s+\d+\s+\d+/m, 'no partitions listed');
    assert.ok(!existsSync(`${dev}p1`) && !existsSync(`${dev}p2`), 'stale partition nodes are gone');

    // The ext4 superblock of the old partition is gone too, not only the table.
    execFileSync('sgdisk', ['-n1:0:+8M', '-n2:0:0', dev], { stdio: 'ignore' });
    execFileSync('partx', ['-u', '--', dev], { stdio: 'ignore' });
    assert.doesNotMatch(probe('blkid', ['-p', `${dev}p2`]).stdout, /\bTYPE="ext4"/, 'recreated partition holds no filesystem');
    assert.equal(probe('wipefs', ['--no-act', '--', `${dev}p2`]).stdout.trim(), '');
  });

  test('wipeDisk: the kernel knew another layout; the table\'s partitions are wiped all the same, no node is left', async (t) => {
    if (reason || !loop || !dir) return t.skip(reason);
    const dev = loop;
    const backup = join(dir, 'layout.gpt');
    // The disk's layout: 8 MiB, then an ext4 partition.
    probe('partx', ['-d', '--', dev]);
    sh('sgdisk', ['--zap-all', dev]);
    sh('sgdisk', ['-n1:0:+8M', '-n2:0:0', dev]);
    sh('partx', ['-a', '--', dev]);
    sh('mkfs.ext4', ['-q', '-L', 'victim', `${dev}p2`]);
    sh('sgdisk', [`--backup=${backup}`, dev]);
    // The kernel is left with an older layout (three partitions elsewhere), the disk keeps its own.
    sh('partx', ['-d', '--', dev]);
    sh('sgdisk', ['--zap-all', dev]);
    sh('sgdisk', ['-n1:0:+20M', '-n2:0:+20M', '-n3:0:0', dev]);
    sh('partx', ['-a', '--', dev]);
    sh('sgdisk', [`--load-backup=${backup}`, dev]);
    assert.deepEqual(kernelPartitions(dev), [1, 2, 3], 'setup: the kernel knows the older layout');

    assert.equal(await wipeDisk(runner, dev, { log: createSilentLogger() }), 'wiped');
    assert.equal(probe('blkid', ['-p', dev]).status, 2, 'blkid finds nothing on the disk');
    assert.equal(probe('wipefs', ['--no-act', '--', dev]).stdout.trim(), '', 'no signatures left');
    assert.deepEqual(kernelPartitions(dev), [], 'no partition nodes are left');
    // The ext4 of the table's partition 2 is gone too, not only the table.
    sh('sgdisk', [`--load-backup=${backup}`, dev]);
    sh('partx', ['-a', '--', dev]);
    assert.doesNotMatch(probe('blkid', ['-p', `${dev}p2`]).stdout, /\bTYPE="ext4"/, 'the old filesystem is wiped');
    sh('partx', ['-d', '--', dev]);
  });

  test('wipeDisk: a disk without a partition table is wiped too', async (t) => {
    if (reason || !loop) return t.skip(reason);
    sh('sgdisk', ['--zap-all', loop]);
    sh('mkfs.ext4', ['-q', '-F', loop]);
    assert.equal(await wipeDisk(runner, loop, { log: createSilentLogger() }), 'wiped');
    assert.equal(probe('blkid', ['-p', loop]).status, 2, 'blkid finds nothing on the disk');
  });
});
