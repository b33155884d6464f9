/**
 * growRoot (src/bootc/grow-root.ts) on a real loop disk laid out as bootc lays it out (BIOS,
 * ESP, root ending before a scratch area): the root partition ends where the scratch ended, its
 * PARTUUID, type and name stay, and its filesystem (xfs, ext4; btrfs when btrfs-progs is here)
 * fills it. A LUKS root is left as it is. Needs root and util-linux/xfsprogs/e2fsprogs; skipped
 * with the reason otherwise. Only this file's loop devices and mounts are touched.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { growRoot } from '../../src/bootc/grow-root.ts';
import { createExecaRunner, type CommandRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { hasCommand, sh, toolMissing } from '../helpers/tools.ts';

const MiB = 2 ** 20;
const DISK_MIB = 2048;
const ROOT_MIB = 900;
// where the scratch area ended: the config drive's 66 MiB reserve follows
const END = (DISK_MIB - 66) * MiB;

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: loop devices and mounts';
  const missing = toolMissing('losetup', 'sfdisk', 'partx', 'mkfs.xfs', 'mkfs.ext4', 'xfs_growfs', 'resize2fs', 'blkid', 'mount', 'umount');
  if (missing) return missing;
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return undefined;
}

interface Row { node: string; start: number; size: number; type: string; uuid: string; name: string }
const table = (dev: string) => (JSON.parse(sh('sfdisk', ['-J', dev])) as { partitiontable: { partitions: Row[] } }).partitiontable.partitions;

describe('growRoot on a real loop disk', { concurrency: false }, () => {
  const reason = skipReason();
  const runner = createExecaRunner();
  let dir = '';
  let disk: LoopDevice | undefined;

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'grow-root-'));
    disk = await attachLoop(dir, DISK_MIB);
  });
  after(async () => {
    disk?.detach();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // bootc's table (root type for x86_64 bootc ≥ 1.11) and a filesystem of `fs` on root
  function layout(fs: string): string {
    const dev = disk!.device;
    sh('sfdisk', ['-q', '--wipe=always', dev], `label: gpt\nsize=1MiB, type=21686148-6449-6E6F-744E-656564454649, name="BIOS-BOOT"\nsize=512MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI-SYSTEM"\nsize=${ROOT_MIB}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"\n`);
    try { sh('partx', ['-d', dev]); } catch { /* none yet */ }
    sh('partx', ['-a', dev]);
    const root = `${dev}p3`;
    sh(fs === 'xfs' ? 'mkfs.xfs' : fs === 'ext4' ? 'mkfs.ext4' : 'mkfs.btrfs', [fs === 'ext4' ? '-F' : '-f', '-q', root]);
    return root;
  }

  function fsBytes(root: string): number {
    const mnt = join(dir, 'mnt');
    sh('mkdir', ['-p', mnt]);
    sh('mount', [root, mnt]);
    try {
      const [blocks, size] = sh('stat', ['-f', '-c', '%b %S', mnt]).trim().split(' ').map(Number) as [number, number];
      return blocks * size;
    } finally {
      sh('umount', [mnt]);
    }
  }

  for (const fs of ['xfs', 'ext4', 'btrfs']) {
    test(`${fs}: the partition ends where the scratch ended, keeps its identity, the filesystem fills it`, async (t) => {
      if (reason) return t.skip(reason);
      if (fs === 'btrfs' && (!hasCommand('mkfs.btrfs') || !hasCommand('btrfs'))) return t.skip('btrfs-progs is not installed');
      const root = layout(fs);
      const before = table(disk!.device)[2]!;
      const small = fsBytes(root);
      const growth = await growRoot(runner, disk!.device, END, { parentDir: join(dir, 'state'), log: createSilentLogger() });
      const after = table(disk!.device)[2]!;
      assert.deepEqual({ ...after, size: 0 }, { ...before, size: 0 }, 'start, PARTUUID, type or name changed');
      assert.equal((after.start + after.size) * 512, END);
      assert.deepEqual(growth, { root_grown_to_mib: Math.floor((after.size * 512) / MiB), root_filesystem: fs });
      assert.equal(Number(sh('cat', [`/sys/class/block/${root.split('/').pop()}/size`]).trim()), after.size, 'the kernel still sees the old size');
      const grown = fsBytes(root);
      // the partition grew by 1982 - 514 - 900 = 568 MiB
      assert.ok(grown > small + 540 * MiB, `${fs} grew from ${small} to ${grown} bytes only`);
    });
  }

  test('a LUKS root is left as bootc made it, saying why', async (t) => {
    if (reason) return t.skip(reason);
    layout('xfs');
    const before = table(disk!.device)[2]!;
    const asLuks: CommandRunner = {
      run: async (file, args, opts) => file === 'blkid' ? { argv: [file, ...args], exitCode: 0, stdout: 'crypto_LUKS\n', stderr: '', durationMs: 0 } : runner.run(file, args, opts),
    };
    const growth = await growRoot(asLuks, disk!.device, END, { parentDir: join(dir, 'state') });
    assert.equal(growth.root_grown_to_mib, null);
    assert.match(growth.not_grown_because!, /LUKS/);
    assert.deepEqual(table(disk!.device)[2], before);
  });

  test('a root that already reaches past the scratch\'s end is refused with ROOT_GROW_FAILED', async (t) => {
    if (reason) return t.skip(reason);
    layout('xfs');
    await assert.rejects(growRoot(runner, disk!.device, 1000 * MiB, { parentDir: join(dir, 'state') }), (err: { code: string; message: string }) => {
      assert.equal(err.code, 'ROOT_GROW_FAILED');
      assert.match(err.message, /beyond where the scratch area ended/);
      return true;
    });
  });
});
