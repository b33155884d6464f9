/**
 * The scratch area in a disk's tail (src/disk/scratch.ts) on a real loop device: it survives
 * what `bootc install to-disk --wipe` does to the disk (the same commands, in the same order, as
 * the stand-in bootc and bootc itself: wipefs of every child, then of the disk, a new GPT from
 * sfdisk --wipe=always, mkfs on the new root partition), bootc's "is it mounted / has it mounted
 * children" view does not see it, and its teardown leaves no mount, no loop device and no
 * signature. Needs root and util-linux/xfsprogs; skipped with the reason otherwise. Only this
 * file's loop devices and mounts are touched, removed in `after` even when a test fails.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createScratch, mountsBelow, type Scratch } from '../../src/disk/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createExecaRunner, type CommandRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { probe, sh, toolMissing } from '../helpers/tools.ts';

const MiB = 2 ** 20;

test('mountsBelow: the mountpoint and what is below it, deepest first, octal escapes undone', async () => {
  const info = [
    '22 1 0:21 / / rw - ext4 /dev/sda1 rw',
    '30 22 7:3 / /run/a/scratch-x rw - xfs /dev/loop3 rw',
    '31 30 0:40 / /run/a/scratch-x/containers/storage/overlay/abc/merged rw - overlay overlay rw',
    '32 30 0:41 / /run/a/scratch-x/run/shm\\040dir rw - tmpfs shm rw',
    '33 22 0:42 / /run/a/scratch-xy rw - tmpfs t rw',
  ].join('\n');
  assert.deepEqual(await mountsBelow('/run/a/scratch-x', info), [
    '/run/a/scratch-x/containers/storage/overlay/abc/merged',
    '/run/a/scratch-x/run/shm dir',
    '/run/a/scratch-x',
  ]);
});

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: loop devices and mounts';
  const missing = toolMissing('losetup', 'sfdisk', 'partx', 'mkfs.xfs', 'wipefs', 'blkid', 'lsblk', 'mount', 'umount');
  if (missing) return missing;
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return undefined;
}

// Loop devices whose backing file is the disk (the scratch's kind).
const loopsOn = (dev: string) => sh('losetup', ['-j', dev, '-nO', 'NAME']).split('\n').filter(Boolean);

describe('scratch area on a real loop disk', { concurrency: false }, () => {
  const reason = skipReason();
  const runner = createExecaRunner();
  let dir = '';
  let disk: LoopDevice | undefined;
  const scratches: Scratch[] = [];

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'scratch-it-'));
    disk = await attachLoop(dir, 3072);
  });

  after(async () => {
    for (const s of scratches) await s.teardown().catch((e: unknown) => console.error('teardown:', e));
    disk?.detach();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('survives bootc --wipe (wipefs children and disk, new GPT, mkfs of root) and its teardown leaves nothing', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.device;
    // an old table with a partition over the tail, as a previous deploy leaves it
    sh('sfdisk', ['-q', '--wipe=always', dev], 'label: gpt\nsize=1024MiB, name="old"\nname="old-tail"\n');
    probe('partx', ['-a', dev]);
    // 800 MiB ending 66 MiB before the disk's end, as src/bootc/layout.ts places it
    const place = { offsetBytes: (3072 - 66 - 800) * MiB, sizeBytes: 800 * MiB };
    // the default parent (/run): podman's run root below it must stay within 50 characters
    const scratch = await createScratch(runner, { disk: dev, ...place, log: createSilentLogger() });
    scratches.push(scratch);
    const payload = randomBytes(8 * MiB);
    await writeFile(join(scratch.containersDir, 'storage', 'blob'), payload);
    sh('sync', []);

    // bootc's view: the disk is not mounted, its children (lsblk) are its partitions only
    const children = sh('lsblk', ['-nrpo', 'NAME', dev]).split('\n').filter(Boolean).slice(1);
    assert.ok(!children.includes(scratch.device), `lsblk lists the scratch ${scratch.device} as a child of ${dev}`);
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    assert.ok(!new RegExp(`^${dev}(p\\d+)? `, 'm').test(mounts), 'the disk or a partition of it counts as mounted');

    // what bootc install to-disk --wipe does, in its order
    for (const c of children.sort().reverse()) probe('wipefs', ['-a', '-q', c]);
    sh('wipefs', ['-a', '-q', dev]);
    const rootMiB = Math.floor(place.offsetBytes / MiB) - 1 - 1 - 512 - 16;
    sh('sfdisk', ['-q', '--wipe=always', dev], `label: gpt\nsize=1MiB, name="BIOS-BOOT"\nsize=512MiB, name="EFI-SYSTEM"\nsize=${rootMiB}MiB, name="root"\n`);
    probe('partx', ['-d', dev]);
    sh('partx', ['-a', dev]);
    sh('mkfs.xfs', ['-q', '-f', `${dev}p3`]);
    const table = JSON.parse(sh('sfdisk', ['-J', dev])) as { partitiontable: { partitions: { start: number; size: number }[] } };
    const rootEnd = table.partitiontable.partitions.at(-1)!.start * 512 + table.partitiontable.partitions.at(-1)!.size * 512;
    assert.ok(rootEnd <= place.offsetBytes, `root ends at ${rootEnd}, the scratch starts at ${place.offsetBytes}`);

    // remounted from the disk (not the page cache), the scratch holds what was written
    sh('umount', [scratch.mountpoint]);
    sh('mount', [scratch.device, scratch.mountpoint]);
    assert.ok(payload.equals(await readFile(join(scratch.containersDir, 'storage', 'blob'))), 'the scratch lost its data');

    // an overlay-like mount below it is unmounted first
    const overlay = join(scratch.containersDir, 'storage', 'overlay');
    sh('mkdir', ['-p', overlay, join(scratch.runDir, 'shm')]);
    sh('mount', ['-t', 'tmpfs', 'tmpfs', overlay]);
    sh('mount', ['-t', 'tmpfs', 'tmpfs', join(scratch.runDir, 'shm')]);
    assert.ok(scratch.runDir.length + '/storage'.length <= 50, `run root ${scratch.runDir}/storage is too long for podman`);
    const steps = await scratch.teardown();
    assert.deepEqual(await scratch.teardown(), steps, 'a second teardown does the same nothing');
    assert.deepEqual(await mountsBelow(scratch.mountpoint), []);
    assert.deepEqual(await mountsBelow(scratch.runDir), []);
    assert.ok(!existsSync(scratch.mountpoint));
    assert.ok(!existsSync(scratch.runDir));
    assert.deepEqual(loopsOn(dev), [], 'the scratch loop device is still attached');
    // nothing recognisable is left where the scratch was
    const look = sh('losetup', ['--find', '--show', '--read-only', '--offset', String(place.offsetBytes), '--sizelimit', String(place.sizeBytes), dev]).trim();
    try {
      assert.equal(probe('blkid', ['-p', look]).status, 2, 'a signature is left in the scratch range');
    } finally {
      sh('losetup', ['-d', look]);
    }
    // bootc's partitions are untouched
    assert.match(sh('blkid', ['-p', '-o', 'value', '-s', 'TYPE', `${dev}p3`]), /xfs/);
  });

  test('a failing set-up leaves no loop device and no mountpoint', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.device;
    const attached: string[] = [];
    const failing: CommandRunner = {
      async run(file, args, opts) {
        if (file === 'mkfs.xfs') throw new Error('mkfs.xfs: injected failure');
        const r = await runner.run(file, args, opts);
        if (file === 'losetup' && args.includes('--show')) attached.push(r.stdout.trim());
        return r;
      },
    };
    const parentDir = join(dir, 'state-fail');
    await assert.rejects(createScratch(failing, { disk: dev, offsetBytes: 2048 * MiB, sizeBytes: 512 * MiB, parentDir }), (err) => {
      assert.ok(isAgentError(err));
      assert.equal(err.code, 'SCRATCH_FAILED');
      assert.match(err.message, /injected failure/);
      return true;
    });
    assert.equal(attached.length, 1);
    assert.deepEqual(loopsOn(dev), [], 'the loop device stayed');
    assert.deepEqual(sh('ls', ['-A', parentDir]).trim(), '');
  });

  test('never uses a loop device whose name contains the disk\'s (bootc would take it for a mount of the disk)', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.device;
    const detached: string[] = [];
    let finds = 0;
    // the first free loop device "is" /dev/loopN7 for disk /dev/loopN
    const lookalike: CommandRunner = {
      async run(file, args, opts) {
        if (file === 'losetup' && args.includes('--find') && finds++ === 0) return { argv: [file, ...args], exitCode: 0, stdout: `${dev}7\n`, stderr: '', durationMs: 0 };
        if (file === 'losetup' && args[0] === '-d' && args[1] === `${dev}7`) {
          detached.push(args[1]);
          return { argv: [file, ...args], exitCode: 0, stdout: '', stderr: '', durationMs: 0 };
        }
        return runner.run(file, args, opts);
      },
    };
    const scratch = await createScratch(lookalike, { disk: dev, offsetBytes: 2048 * MiB, sizeBytes: 512 * MiB, parentDir: join(dir, 'state-lookalike') });
    scratches.push(scratch);
    assert.ok(!scratch.device.includes(dev), `${scratch.device} contains ${dev}`);
    assert.deepEqual(detached, [`${dev}7`], 'the look-alike was not let go');
    assert.equal(finds, 2);
    await scratch.teardown();
    assert.deepEqual(loopsOn(dev), []);
  });

  test('refuses a path outside /dev and unaligned ranges before running anything', async () => {
    const none: CommandRunner = { run: () => { throw new Error('nothing may run'); } };
    for (const bad of [{ disk: '/tmp/x', offsetBytes: MiB, sizeBytes: MiB }, { disk: '/dev/sdz', offsetBytes: MiB + 1, sizeBytes: MiB }]) {
      await assert.rejects(createScratch(none, { ...bad, parentDir: join(tmpdir(), 'never') }), { code: 'SCRATCH_FAILED' });
    }
  });
});
