/**
 * syncKernelPartitions against a fake sysfs whose partitions the scripted partx calls change the
 * way the kernel would (BLKPG): which commands run for which difference, strict and lenient.
 * The real kernel is in kernel-partitions.integration.test.ts.
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { kernelMismatches, parseSfdiskJson, syncKernelPartitions, type PartitionTable } from '../../src/disk/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';
import { fakeSysfs, geometryOf, type FakeSysfs, type Geometry } from './fake-kernel.ts';

const DISK = '/dev/fakesdx';
const KNAME = 'fakesdx';
const sysfs: FakeSysfs[] = [];
after(() => {
  for (const fake of sysfs) fake.remove();
});

// The kernel's view of the one disk these tests use.
function fakeKernel(partitions: Geometry): { sysRoot: string; set(parts: Geometry): void; names(): string[] } {
  const fake = fakeSysfs();
  sysfs.push(fake);
  fake.set(KNAME, partitions);
  return { sysRoot: fake.sysRoot, set: (parts) => fake.set(KNAME, parts), names: () => fake.names(KNAME) };
}

function table(parts: Array<[start: number, size: number]>, options: { label?: string; sectorSize?: number; types?: string[] } = {}): PartitionTable {
  return parseSfdiskJson(JSON.stringify({
    partitiontable: {
      label: options.label ?? 'gpt', firstlba: 34, lastlba: 4194270, sectorsize: options.sectorSize ?? 512,
      partitions: parts.map(([start, size], i) => ({ node: `${DISK}${i + 1}`, start, size, type: options.types?.[i] ?? '0FC63DAF-8483-4772-8E79-3D69D8477DE4' })),
    },
  }));
}

const TWO = table([[2048, 131072], [133120, 131072]]);

describe('syncKernelPartitions', () => {
  test('the kernel already matches: nothing runs', async () => {
    const kernel = fakeKernel(geometryOf(TWO));
    const runner = createFakeRunner([]);
    const result = await syncKernelPartitions(runner, DISK, { mode: 'strict', table: TWO, sysRoot: kernel.sysRoot, udev: false });
    assert.deepEqual(result, { table: TWO, steps: [], mismatches: [] });
    assert.equal(runner.calls.length, 0);
  });

  test('partitions only missing (one just added): partx -a alone, nothing deleted', async () => {
    const kernel = fakeKernel({ 1: [2048, 131072] });
    const runner = createFakeRunner([{ argv: ['partx', '-a', '--', DISK], exitCode: 1, respond: () => { kernel.set(geometryOf(TWO)); return {}; } }], { ordered: true });
    const result = await syncKernelPartitions(runner, DISK, { mode: 'strict', table: TWO, sysRoot: kernel.sysRoot, udev: false });
    assert.deepEqual(result.steps, ['partx -a']);
    runner.assertDone();
  });

  test('stale and moved partitions: partx -d then partx -a (never partx -u)', async () => {
    // An older layout: 1 MiB, 512 MiB, 510 MiB, rest; the new partition 1 overlaps the old 2.
    const kernel = fakeKernel({ 1: [2048, 2048], 2: [4096, 1048576], 3: [1052672, 1044480], 4: [2097152, 2097118] });
    const runner = createFakeRunner([
      { argv: ['partx', '-d', '--', DISK], respond: () => { kernel.set({}); return {}; } },
      { argv: ['partx', '-a', '--', DISK], respond: () => { kernel.set(geometryOf(TWO)); return {}; } },
    ], { ordered: true });
    const result = await syncKernelPartitions(runner, DISK, { mode: 'strict', table: TWO, sysRoot: kernel.sysRoot, udev: false });
    assert.deepEqual(result.steps, ['partx -d', 'partx -a']);
    assert.deepEqual(kernel.names(), [`${KNAME}1`, `${KNAME}2`]);
    runner.assertDone();
  });

  test('strict: a kernel that will not follow is the caller\'s error code, after three rounds', async () => {
    const kernel = fakeKernel({ 1: [7, 7], 9: [9, 9] });
    const sleeps: number[] = [];
    const runner = createFakeRunner([{ argv: (a) => a[0] === 'partx', times: Infinity }]);
    await assert.rejects(
      syncKernelPartitions(runner, DISK, { mode: 'strict', code: 'CONFIGDRIVE_WRITE_FAILED', table: TWO, sysRoot: kernel.sysRoot, udev: false, sleep: async (ms) => { sleeps.push(ms); } }),
      (err: unknown) => {
        assert.ok(isAgentError(err));
        assert.equal(err.code, 'CONFIGDRIVE_WRITE_FAILED');
        assert.match(err.message, /^The kernel's partitions of \/dev\/fakesdx do not match its partition table: /);
        assert.deepEqual(err.details['mismatches'], [
          '/dev/fakesdx1: kernel has start 3584 size 3584, table has start 1048576 size 67108864',
          '/dev/fakesdx2: unknown to the kernel',
          '/dev/fakesdx9: stale, not in the table',
        ]);
        return true;
      },
    );
    assert.deepEqual(runner.commandLines(), Array(3).fill([`partx -d -- ${DISK}`, `partx -a -- ${DISK}`]).flat());
    assert.deepEqual(sleeps, [200, 400]);
  });

  test('lenient: a disk without a table ends with no partitions; partx -a is not run', async () => {
    const kernel = fakeKernel(geometryOf(TWO));
    const runner = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], exitCode: 1, stderr: `sfdisk: ${DISK}: does not contain a recognized partition table` },
      { argv: ['partx', '-d', '--', DISK], respond: () => { kernel.set({}); return {}; } },
    ], { ordered: true });
    const result = await syncKernelPartitions(runner, DISK, { mode: 'lenient', sysRoot: kernel.sysRoot, udev: false });
    assert.deepEqual(result, { table: null, steps: ['partx -d'], mismatches: [] });
    assert.deepEqual(kernel.names(), []);
    runner.assertDone();
  });

  test('lenient: what cannot be fixed is returned, not thrown', async () => {
    const kernel = fakeKernel({ 3: [1, 1] });
    const runner = createFakeRunner([{ argv: (a) => a[0] === 'partx', exitCode: 1, stderr: 'partx: error deleting partition 3', times: Infinity }]);
    const result = await syncKernelPartitions(runner, DISK, { mode: 'lenient', table: null, sysRoot: kernel.sysRoot, udev: false, sleep: async () => undefined });
    assert.deepEqual(result.mismatches, ['/dev/fakesdx3: stale, not in the table']);
    assert.equal(runner.calls.length, 3);
  });

  test('strict reads the table itself when not given one; an unreadable table is the caller\'s code', async () => {
    const kernel = fakeKernel({});
    const runner = createFakeRunner([{ argv: ['sfdisk', '--json', '--', DISK], exitCode: 1, stderr: 'does not contain a recognized partition table' }]);
    await assert.rejects(syncKernelPartitions(runner, DISK, { mode: 'strict', code: 'PARTITION_VALIDATION_FAILED', context: 'after install', sysRoot: kernel.sysRoot, udev: false }), {
      code: 'PARTITION_VALIDATION_FAILED', message: /^Cannot read a partition table from \/dev\/fakesdx after install: /,
    });
  });

  test('4096-byte sectors are compared in the 512-byte units of sysfs', async () => {
    const t = table([[256, 16384]], { sectorSize: 4096 });
    const kernel = fakeKernel({ 1: [2048, 131072] });
    assert.deepEqual(await kernelMismatches(kernel.sysRoot, KNAME, t), []);
    kernel.set({ 1: [256, 16384] });
    assert.deepEqual(await kernelMismatches(kernel.sysRoot, KNAME, t), ['/dev/fakesdx1: kernel has start 131072 size 8388608, table has start 1048576 size 67108864']);
  });

  test('an MBR extended partition is only checked for its start (the kernel keeps its first sectors)', async () => {
    const t = table([[2048, 102400], [104448, 307200]], { label: 'dos', types: ['83', '5'] });
    const kernel = fakeKernel({ 1: [2048, 102400], 2: [104448, 2] });
    assert.deepEqual(await kernelMismatches(kernel.sysRoot, KNAME, t), []);
    kernel.set({ 1: [2048, 102400], 2: [104450, 2] });
    assert.equal((await kernelMismatches(kernel.sysRoot, KNAME, t)).length, 1);
  });

  test('a disk sysfs does not have: nothing to compare, nothing runs', async () => {
    const runner = createFakeRunner([]);
    const result = await syncKernelPartitions(runner, DISK, { mode: 'strict', table: TWO, sysRoot: join(tmpdir(), 'no-such-sysfs'), udev: false });
    assert.deepEqual(result.mismatches, []);
    assert.equal(runner.calls.length, 0);
  });

  test('where udev runs, its queue is waited for', async () => {
    const kernel = fakeKernel(geometryOf(TWO));
    const runner = createFakeRunner([{ argv: ['udevadm', 'settle', '--timeout=30'] }]);
    const result = await syncKernelPartitions(runner, DISK, { mode: 'strict', table: TWO, sysRoot: kernel.sysRoot, udev: true });
    assert.deepEqual(result.steps, ['udevadm']);
    runner.assertDone();
  });

  test('cancellation between rounds is CANCELLED', async () => {
    const kernel = fakeKernel({ 5: [1, 1] });
    const controller = new AbortController();
    const runner = createFakeRunner([{ argv: (a) => a[0] === 'partx', times: Infinity, respond: () => { controller.abort(); return {}; } }]);
    await assert.rejects(
      syncKernelPartitions(runner, DISK, { mode: 'lenient', table: null, sysRoot: kernel.sysRoot, udev: false, signal: controller.signal }),
      { code: 'CANCELLED' },
    );
  });
});
