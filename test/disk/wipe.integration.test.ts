/**
 * wipeDisk on a real loop device (attached without partition scanning, as on a kernel without
 * partition-table parsers): the disk's table, its partitions' filesystems and the kernel's
 * partitions of it are gone afterwards, also when the kernel knew another layout than the one
 * on disk. Needs root and the util-linux/gdisk tools; skipped (with the reason) otherwise. Only
 * the loop device attached here is touched, and it is detached in `after`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { wipeDisk } from '../../src/disk/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { toolMissing } from '../helpers/tools.ts';

const TOOLS = ['losetup', 'sgdisk', 'sfdisk', 'partx', 'mkfs.ext4', 'wipefs', 'blkid', 'lsblk', 'blockdev', 'dd'];

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: attaches and partitions a loop device';
  const missing = toolMissing(...TOOLS);
  if (missing) return missing;
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return undefined;
}

function run(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Exit code and output of a command that may fail (blkid exits 2 when it finds nothing).
function probe(file: string, args: string[]): { status: number; stdout: string } {
  try {
    return { status: 0, stdout: run(file, args) };
  } catch (err) {
    const e = err as { status?: number; stdout?: string };
    return { status: e.status ?? -1, stdout: e.stdout ?? '' };
  }
}

function kernelPartitions(dev: string): number[] {
  return [1, 2, 3, 4].filter((n) => existsSync(`/sys/class/block/${dev.split('/').pop()}p${n}`));
}

describe('wipeDisk on a real loop device', () => {
  const reason = skipReason();
  const runner = createExecaRunner();
  const log = createSilentLogger();
  let dir: string | undefined;
  let loop: LoopDevice | undefined;

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'disk-wipe-'));
    loop = await attachLoop(dir, 128);
  });

  after(async () => {
    loop?.detach();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the kernel knew another layout: the table\'s partitions are wiped all the same, no node is left', async (t) => {
    if (reason || !loop) return t.skip(reason);
    const dev = loop.device;
    const backup = join(dir!, 'layout.gpt');
    // The disk's layout: 8 MiB, then an ext4 partition.
    run('sgdisk', ['--zap-all', dev]);
    run('sgdisk', ['-n1:0:+8M', '-n2:0:0', dev]);
    run('partx', ['-a', '--', dev]);
    run('mkfs.ext4', ['-q', '-L', 'victim', `${dev}p2`]);
    run('sgdisk', [`--backup=${backup}`, dev]);
    // The kernel is left with an older layout (three partitions elsewhere), the disk keeps its own.
    run('partx', ['-d', '--', dev]);
    run('sgdisk', ['--zap-all', dev]);
    run('sgdisk', ['-n1:0:+20M', '-n2:0:+20M', '-n3:0:0', dev]);
    run('partx', ['-a', '--', dev]);
    run('sgdisk', [`--load-backup=${backup}`, dev]);
    assert.deepEqual(kernelPartitions(dev), [1, 2, 3], 'setup: the kernel knows the older layout');

    assert.equal(await wipeDisk(runner, dev, { log }), 'wiped');
    assert.equal(probe('blkid', ['-p', dev]).status, 2, 'blkid finds nothing on the disk');
    assert.equal(probe('wipefs', ['--no-act', '--', dev]).stdout.trim(), '', 'no signatures left');
    assert.deepEqual(kernelPartitions(dev), [], 'no partition nodes are left');
    // The ext4 of the table's partition 2 is gone too, not only the table.
    run('sgdisk', [`--load-backup=${backup}`, dev]);
    run('partx', ['-a', '--', dev]);
    assert.doesNotMatch(probe('blkid', ['-p', `${dev}p2`]).stdout, /\bTYPE="ext4"/, 'the old filesystem is wiped');
    run('partx', ['-d', '--', dev]);
  });

  test('a disk without a partition table is wiped too', async (t) => {
    if (reason || !loop) return t.skip(reason);
    const dev = loop.device;
    run('sgdisk', ['--zap-all', dev]);
    run('mkfs.ext4', ['-q', '-F', dev]);
    assert.equal(await wipeDisk(runner, dev, { log }), 'wiped');
    assert.equal(probe('blkid', ['-p', dev]).status, 2, 'blkid finds nothing on the disk');
  });
});
