/**
 * writeConfigDrive against real loop devices laid out the way `bootc install to-disk` leaves
 * them, with the real command runner. Needs root, losetup and the partitioning tools; each test
 * detaches only the loop device it attached.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { writeConfigDrive } from '../../src/configdrive/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { buildIso, defaultFiles, hasCommand, META_DATA, tempDir } from './fixtures.ts';

const MiB = 1024 * 1024;
const TOOLS = ['losetup', 'sgdisk', 'sfdisk', 'partx', 'blkid', 'wipefs', 'genisoimage', 'isoinfo', 'xorriso', 'mkfs.vfat', 'mkfs.ext4', 'mcopy', 'mtype', 'mdir'];
const missing = TOOLS.filter((tool) => !hasCommand(tool));
const skip = process.getuid?.() !== 0 ? 'needs root for loop devices'
  : missing.length > 0 ? `needs ${missing.join(', ')}`
  : false;
const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

function run(file: string, args: string[], env?: NodeJS.ProcessEnv): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
}

interface LoopDisk { loop: string; file: string }

// A sparse disk image on a loop device of our own; detached (and its nodes removed) after the test.
function attachDisk(t: TestContext, options: { sizeBytes?: number; sectorSize?: number } = {}): LoopDisk {
  const dir = tempDir(t, 'configdrive-loop-');
  const file = join(dir, 'disk.img');
  closeSync(openSync(file, 'w'));
  truncateSync(file, options.sizeBytes ?? 3 * 1024 * MiB);
  const sector = options.sectorSize ? ['--sector-size', String(options.sectorSize)] : [];
  let loop: string;
  try {
    loop = run('losetup', ['--find', '--show', ...sector, file]).trim();
  } catch (err) {
    t.skip(`no free loop device: ${(err as Error).message}`);
    throw err;
  }
  // A loop device whose previous user added partitions with partx and detached it without
  // dropping them still has them in the kernel; partx -a would then fail with EBUSY.
  try { run('partx', ['-d', '--', loop]); } catch { /* none */ }
  t.after(() => {
    try { run('partx', ['-d', '--', loop]); } catch { /* no partitions known to the kernel */ }
    run('losetup', ['-d', loop]);
  });
  return { loop, file };
}

// bootc's x86_64 layout (BIOS-BOOT 1 MiB, ESP 512 MiB, root) leaving `tailMiB` free at the end.
function layOutLikeBootc(disk: LoopDisk, tailMiB: number, extra: string[] = []): void {
  const root = tailMiB > 0 ? `-${tailMiB}M` : '0';
  run('sgdisk', ['-Z', '-n', '1:0:+1M', '-t', '1:ef02', '-c', '1:BIOS-BOOT', '-n', '2:0:+512M', '-t', '2:ef00', '-c', '2:EFI-SYSTEM',
    '-n', `3:0:${root}`, '-t', '3:8304', '-c', '3:root', ...extra, '--', disk.loop]);
  run('partx', ['-a', '--', disk.loop]);
  run('mkfs.vfat', ['-n', 'EFI-SYSTEM', '--', `${disk.loop}p2`]);
  run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-E', 'nodiscard', '--', `${disk.loop}p3`]);
}

function table(loop: string) {
  return JSON.parse(run('sfdisk', ['--json', '--', loop])).partitiontable as {
    lastlba: number; sectorsize: number; partitions: Array<{ node: string; start: number; size: number; name?: string; uuid?: string }>;
  };
}

function blkidOf(node: string): Record<string, string> {
  return Object.fromEntries(run('blkid', ['-p', '-o', 'export', '--', node]).trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
}

const deps = () => ({ runner: createExecaRunner(), log: createSilentLogger(), signal: AbortSignal.timeout(120_000) });

describe('writeConfigDrive on a loop device', { skip }, () => {
  it('writes the ISO into a new last partition ending at the last usable sector, then reuses it', async (t) => {
    const disk = attachDisk(t);
    layOutLikeBootc(disk, 100);
    const iso = buildIso(tempDir(t));
    const result = await writeConfigDrive(disk.loop, gzipSync(iso).toString('base64'), deps());
    assert.deepEqual([result.format, result.label, result.bytes], ['iso9660', 'config-2', iso.length]);
    assert.equal(result.partition.path, `${disk.loop}p4`);
    assert.equal(result.partition.created, true);

    const after = table(disk.loop);
    const last = after.partitions.reduce((a, b) => (b.start > a.start ? b : a));
    assert.equal(last.node, `${disk.loop}p4`, 'the config drive is the last partition');
    assert.equal(last.start + last.size - 1, after.lastlba, 'it ends at the last usable sector');
    assert.ok(last.size * after.sectorsize >= 64 * MiB);
    assert.equal(last.name, 'config-2');
    assert.equal(last.uuid?.toLowerCase(), result.partition.partuuid);
    assert.equal(last.start % 2048, 0, 'aligned to 1 MiB');

    const probe = blkidOf(`${disk.loop}p4`);
    assert.deepEqual([probe.LABEL, probe.TYPE], ['config-2', 'iso9660']);
    assert.deepEqual(JSON.parse(run('isoinfo', ['-i', `${disk.loop}p4`, '-R', '-x', '/openstack/latest/meta_data.json'])), META_DATA);
    assert.equal(blkidOf(`${disk.loop}p3`).LABEL, 'root', 'root is untouched');

    const again = buildIso(tempDir(t), { files: defaultFiles({ ...META_DATA, name: 'node-1' }) });
    const second = await writeConfigDrive(disk.loop, again.toString('base64'), deps());
    assert.deepEqual([second.partition.path, second.partition.created], [`${disk.loop}p4`, false]);
    assert.equal(table(disk.loop).partitions.length, 4, 'no partition added');
    assert.equal(JSON.parse(run('isoinfo', ['-i', `${disk.loop}p4`, '-R', '-x', '/openstack/latest/meta_data.json'])).name, 'node-1');
  });

  it('refuses a disk with two config-2 partitions and leaves it alone', async (t) => {
    const disk = attachDisk(t);
    layOutLikeBootc(disk, 200, ['-n', '4:0:+64M', '-c', '4:config-2', '-n', '5:0:0', '-c', '5:CONFIG-2']);
    const before = table(disk.loop);
    await assert.rejects(writeConfigDrive(disk.loop, buildIso(tempDir(t)).toString('base64'), deps()), (err) => {
      assert.ok(isAgentError(err) && err.code === 'PARTITION_TABLE_INVALID');
      assert.match(err.message, /2 partitions labelled config-2/);
      return true;
    });
    assert.deepEqual(table(disk.loop), before);
  });

  it('fails when the free tail is too small, naming the free space', async (t) => {
    const disk = attachDisk(t);
    layOutLikeBootc(disk, 10);
    await assert.rejects(writeConfigDrive(disk.loop, buildIso(tempDir(t)).toString('base64'), deps()), (err) => {
      assert.ok(isAgentError(err) && err.code === 'CONFIGDRIVE_NO_SPACE');
      assert.match(err.message, /^Only 10\.0 MiB is free at the end of the disk/);
      return true;
    });
    assert.equal(table(disk.loop).partitions.length, 3);
  });

  it('builds a vfat CONFIG-2 drive when asked (rebuild), readable with mtools', async (t) => {
    const disk = attachDisk(t);
    layOutLikeBootc(disk, 100);
    const result = await writeConfigDrive(disk.loop, gzipSync(buildIso(tempDir(t))).toString('base64'), { ...deps(), rebuild: true });
    assert.deepEqual([result.format, result.label], ['vfat', 'CONFIG-2']);
    const probe = blkidOf(result.partition.path);
    assert.deepEqual([probe.LABEL, probe.TYPE], ['CONFIG-2', 'vfat']);
    const meta = run('mtype', ['-i', result.partition.path, '::/openstack/latest/meta_data.json'], MTOOLS_ENV);
    assert.deepEqual(JSON.parse(meta), META_DATA);
    assert.match(run('mtype', ['-i', result.partition.path, '::/openstack/latest/user_data'], MTOOLS_ENV), /^#cloud-config/);
  });

  it('falls back to vfat by itself on 4096-byte logical sectors', async (t) => {
    const disk = attachDisk(t, { sizeBytes: 2 * 1024 * MiB, sectorSize: 4096 });
    layOutLikeBootc(disk, 100);
    const result = await writeConfigDrive(disk.loop, gzipSync(buildIso(tempDir(t))).toString('base64'), deps());
    assert.equal(result.format, 'vfat');
    assert.equal(result.partition.sectorSize, 4096);
    const after = table(disk.loop);
    assert.equal(result.partition.start / 4096 + result.partition.size / 4096 - 1, after.lastlba);
    assert.deepEqual(JSON.parse(run('mtype', ['-i', result.partition.path, '::/openstack/latest/meta_data.json'], MTOOLS_ENV)), META_DATA);
  });

  it('moves the backup GPT to the end of a grown disk and uses the new tail', async (t) => {
    const disk = attachDisk(t);
    layOutLikeBootc(disk, 0);
    truncateSync(disk.file, 3 * 1024 * MiB + 128 * MiB);
    run('losetup', ['-c', disk.loop]);
    const result = await writeConfigDrive(disk.loop, buildIso(tempDir(t)).toString('base64'), deps());
    const after = table(disk.loop);
    assert.equal(after.lastlba, (3 * 1024 + 128) * 2048 - 34);
    assert.equal((result.partition.start + result.partition.size) / 512 - 1, after.lastlba);
    assert.equal(blkidOf(result.partition.path).LABEL, 'config-2');
  });
});
