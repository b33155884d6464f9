/**
 * After bootc rewrites the partition table, the kernel's partitions must match it before the
 * config drive is written through a partition node. On a kernel without partition-table parsers
 * (our CI) `partx -u` cannot get there when a new partition overlaps an old one with a higher
 * number (EBUSY) and leaves stale nodes. This test reproduces that on a real loop device and
 * checks that readPartitionTable (verify phase) and ensureConfigDrivePartition fix or refuse it.
 * Needs root, losetup, sgdisk, partx; skipped with the reason otherwise. Only the loop device
 * attached here is touched, and it is detached in `after`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readPartitionTable } from '../../src/deploy/partitions.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { toolMissing } from '../helpers/tools.ts';

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: attaches and partitions a loop device';
  const missing = toolMissing('losetup', 'sgdisk', 'partx', 'sfdisk');
  if (missing) return missing;
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return undefined;
}

function run(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
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

describe('kernel partitions follow the table after bootc rewrote it', () => {
  const reason = skipReason();
  let dir: string | undefined;
  let loop: LoopDevice | undefined;
  let dev: string | undefined;

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'partition-sync-'));
    loop = await attachLoop(dir, 2048);
    dev = loop.device;
  });

  after(async () => {
    loop?.detach();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('stale and shifted partitions are replaced; partx -u alone would have left them', async (t) => {
    if (reason || !dev) return t.skip(reason);
    // An old layout the kernel knows: 1 MiB, 512 MiB, 510 MiB, rest.
    run('sgdisk', ['--zap-all', dev]);
    run('sgdisk', ['-n1:0:+1M', '-n2:0:+512M', '-n3:0:+510M', '-n4:0:0', dev]);
    tryRun('partx', ['-d', '--', dev]);
    run('partx', ['-a', '--', dev]);
    assert.ok(existsSync(`${dev}p4`));
    // The new table (what bootc's sfdisk writes): partition 1 overlaps the old partition 2.
    run('sgdisk', ['--zap-all', dev]);
    run('sgdisk', ['-n1:0:+64M', '-n2:0:+64M', dev]);
    tryRun('partx', ['-u', '--', dev]);
    assert.ok(existsSync(`${dev}p3`) || existsSync(`${dev}p4`) || (await kernelStart(dev, 1)) !== 1024 * 1024,
      'setup: partx -u was expected to leave the kernel out of step (util-linux fixed it?)');

    const table = await readPartitionTable(createExecaRunner(), dev, 2 * 2 ** 30);
    assert.equal(table.partitions.length, 2);
    assert.equal(await kernelStart(dev, 1), table.partitions[0]!.start_bytes);
    assert.equal(await kernelStart(dev, 2), table.partitions[1]!.start_bytes);
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
    const runner = createExecaRunner();
    await assert.rejects(readPartitionTable(runner, dev, 2 * 2 ** 30, undefined, fakeSys), (err: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(err.code, 'PARTITION_VALIDATION_FAILED');
      const mismatches = (err.details?.mismatches ?? [err.message]) as string[];
      assert.ok(mismatches.some((m) => m.includes(`${name}p1: kernel has start 3584`)), mismatches.join('\n'));
      assert.ok(mismatches.some((m) => m.includes(`${name}p9: stale`)), mismatches.join('\n'));
      return true;
    });
  });
});
