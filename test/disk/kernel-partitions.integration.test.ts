/**
 * After a partition table is rewritten (bootc's sfdisk, the config drive's sgdisk, a raw image
 * written over the whole disk), the kernel's partitions must match it before anything is written
 * through a partition node. On a kernel without partition-table parsers (our CI) nothing re-reads
 * the table by itself, and `partx -u` cannot get there when a new partition overlaps an old one
 * with a higher number (EBUSY) and leaves stale nodes. These tests reproduce that on real loop
 * devices (attached without partition scanning, and with it) and check that syncKernelPartitions
 * fixes or refuses it (strict), and gets a raw image's layout right whatever it is (lenient).
 * Needs root, losetup, sgdisk, sfdisk, partx; skipped with the reason otherwise. Only the loop
 * devices attached here are touched, and they are detached in `after`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { partitionBytes, syncKernelPartitions } from '../../src/disk/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { toolMissing } from '../helpers/tools.ts';

const MiB = 1024 * 1024;

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: attaches and partitions a loop device';
  const missing = toolMissing('losetup', 'sgdisk', 'partx', 'sfdisk');
  if (missing) return missing;
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return undefined;
}

function run(file: string, args: string[], input?: string): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...(input === undefined ? {} : { input }) });
}

function tryRun(file: string, args: string[]): void {
  try {
    run(file, args);
  } catch {
    // best effort (partx -u fails in exactly the case under test)
  }
}

async function kernelStart(dev: string, n: number): Promise<number | undefined> {
  const name = `${dev.split('/').pop()}p${n}`;
  return readFile(`/sys/class/block/${name}/start`, 'utf8').then((s) => Number(s.trim()) * 512, () => undefined);
}

function kernelPartitions(dev: string): number[] {
  return [1, 2, 3, 4, 5, 6, 7, 8].filter((n) => existsSync(`/sys/class/block/${dev.split('/').pop()}p${n}`));
}

// The old layout the kernel knows: 1 MiB, 512 MiB, 510 MiB, rest.
function oldLayoutKnown(dev: string): void {
  run('sgdisk', ['--zap-all', dev]);
  run('sgdisk', ['-n1:0:+1M', '-n2:0:+512M', '-n3:0:+510M', '-n4:0:0', dev]);
  tryRun('partx', ['-d', '--', dev]);
  run('partx', ['-a', '--', dev]);
  assert.ok(existsSync(`${dev}p4`));
}

// A loop device attached with extra losetup flags (--partscan, --sector-size), detached in `after`.
function attachWith(file: string, flags: string[]): LoopDevice {
  const device = run('losetup', ['--find', '--show', ...flags, file]).trim();
  assert.match(device, /^\/dev\/loop\d+$/);
  let attached = true;
  return {
    device, file,
    detach() {
      if (!attached) return;
      attached = false;
      tryRun('partx', ['-d', '--', device]);
      run('losetup', ['-d', device]);
    },
  };
}

describe('kernel partitions follow the table after bootc rewrote it', () => {
  const reason = skipReason();
  const runner = createExecaRunner();
  let dir: string | undefined;
  const loops: LoopDevice[] = [];
  let dev: string | undefined;

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'partition-sync-'));
    loops.push(await attachLoop(dir, 2048));
    dev = loops[0]!.device;
  });

  after(async () => {
    for (const loop of loops) loop.detach();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('stale and shifted partitions are replaced; partx -u alone would have left them', async (t) => {
    if (reason || !dev) return t.skip(reason);
    oldLayoutKnown(dev);
    // The new table (what bootc's sfdisk writes): partition 1 overlaps the old partition 2.
    run('sgdisk', ['--zap-all', dev]);
    run('sgdisk', ['-n1:0:+64M', '-n2:0:+64M', dev]);
    tryRun('partx', ['-u', '--', dev]);
    assert.ok(existsSync(`${dev}p3`) || existsSync(`${dev}p4`) || (await kernelStart(dev, 1)) !== 1024 * 1024,
      'setup: partx -u was expected to leave the kernel out of step (util-linux fixed it?)');

    const { table } = await syncKernelPartitions(runner, dev, { mode: 'strict' });
    assert.ok(table);
    assert.equal(table.partitions.length, 2);
    assert.equal(await kernelStart(dev, 1), partitionBytes(table, table.partitions[0]!).start);
    assert.equal(await kernelStart(dev, 2), partitionBytes(table, table.partitions[1]!).start);
    assert.ok(!existsSync(`${dev}p3`) && !existsSync(`${dev}p4`), 'stale partition nodes are gone');
  });

  test('a partition that cannot be re-added is a PARTITION_VALIDATION_FAILED, not silence', async (t) => {
    if (reason || !dev) return t.skip(reason);
    run('sgdisk', ['--zap-all', dev]);
    run('sgdisk', ['-n1:0:+64M', '-n2:0:+64M', dev]);
    // A kernel view that disagrees, and a sysfs root where nothing can be fixed.
    const fakeSys = await mkdtemp(join(dir!, 'sys-'));
    const name = dev.split('/').pop()!;
    const fake = join(fakeSys, 'class/block');
    // sysfs shape: class/block/<disk>/<part>/ and a class/block/<part> link to it
    for (const part of [`${name}p1`, `${name}p2`, `${name}p9`]) {
      execFileSync('mkdir', ['-p', join(fake, name, part)]);
      execFileSync('ln', ['-s', join(fake, name, part), join(fake, part)]);
    }
    await writeFile(join(fake, name, `${name}p1`, 'start'), '7\n');
    await writeFile(join(fake, name, `${name}p1`, 'size'), '7\n');
    await assert.rejects(syncKernelPartitions(runner, dev, { mode: 'strict', sysRoot: fakeSys }), (err: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(err.code, 'PARTITION_VALIDATION_FAILED');
      const mismatches = (err.details?.mismatches ?? [err.message]) as string[];
      assert.ok(mismatches.some((m) => m.includes(`${name}p1: kernel has start 3584`)), mismatches.join('\n'));
      assert.ok(mismatches.some((m) => m.includes(`${name}p9: stale`)), mismatches.join('\n'));
      return true;
    });
  });

  test('a raw image written over the disk (write_image): the kernel ends with the image\'s partitions', async (t) => {
    if (reason || !dev) return t.skip(reason);
    oldLayoutKnown(dev);
    // The image: its own GPT, two partitions that overlap the old first two, written with dd.
    const image = join(dir!, 'image.raw');
    await writeFile(image, '');
    await truncate(image, 300 * MiB);
    run('sgdisk', ['-n1:0:+100M', '-n2:0:+150M', image]);
    run('dd', [`if=${image}`, `of=${dev}`, 'bs=1M', 'conv=fsync', 'status=none']);
    const result = await syncKernelPartitions(runner, dev, { mode: 'lenient' });
    assert.deepEqual(result.mismatches, []);
    assert.deepEqual(result.steps.filter((s) => s.startsWith('partx')), ['partx -d', 'partx -a']);
    assert.deepEqual(kernelPartitions(dev), [1, 2]);
    assert.equal(await kernelStart(dev, 2), partitionBytes(result.table!, result.table!.partitions[1]!).start);
  });

  test('a raw image without a partition table: no partitions left, and no error', async (t) => {
    if (reason || !dev) return t.skip(reason);
    oldLayoutKnown(dev);
    run('sgdisk', ['--zap-all', dev]);
    run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=1M', 'count=2', 'conv=fsync', 'status=none']);
    const result = await syncKernelPartitions(runner, dev, { mode: 'lenient' });
    assert.deepEqual([result.table, result.mismatches], [null, []]);
    assert.deepEqual(kernelPartitions(dev), []);
  });

  test('an MBR image with an extended partition: primary, extended and logical partitions', async (t) => {
    if (reason || !dev) return t.skip(reason);
    oldLayoutKnown(dev);
    run('sgdisk', ['--zap-all', dev]);
    run('sfdisk', ['-q', dev], [
      'label: dos', `${dev}p1 : size=50M, type=83`, `${dev}p2 : size=150M, type=5`, `${dev}p5 : size=30M, type=83`, `${dev}p6 : size=30M, type=83`, '',
    ].join('\n'));
    const result = await syncKernelPartitions(runner, dev, { mode: 'lenient' });
    assert.deepEqual(result.mismatches, []);
    assert.deepEqual(kernelPartitions(dev), [1, 2, 5, 6]);
    assert.equal(await kernelStart(dev, 6), partitionBytes(result.table!, result.table!.partitions[3]!).start);
  });

  for (const [what, flags] of [['with partition scanning', ['--partscan']], ['with 4096-byte sectors', ['--sector-size', '4096']]] as const) {
    test(`a loop device attached ${what}: the same layout change ends the same way`, async (t) => {
      if (reason || !dir) return t.skip(reason);
      const file = join(dir, `disk-${flags[0]}.img`);
      await writeFile(file, '');
      await truncate(file, 2048 * MiB);
      const loop = attachWith(file, [...flags]);
      loops.push(loop);
      oldLayoutKnown(loop.device);
      run('sgdisk', ['--zap-all', loop.device]);
      run('sgdisk', ['-n1:0:+64M', '-n2:0:+64M', loop.device]);
      const { table } = await syncKernelPartitions(runner, loop.device, { mode: 'strict' });
      assert.deepEqual(kernelPartitions(loop.device), [1, 2]);
      assert.equal(await kernelStart(loop.device, 2), partitionBytes(table, table.partitions[1]!).start);
      assert.equal(table.sectorSize, flags[0] === '--partscan' ? 512 : 4096);
    });
  }
});
