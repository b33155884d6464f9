import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ensureConfigDrivePartition, type PartitionDeps } from '../../src/configdrive/index.ts';
import { backupHeaderMisplaced, parseBlkidExport, planTailPartition } from '../../src/configdrive/table.ts';
import type { PartitionTable } from '../../src/disk/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { fakeSysfs, type Geometry } from '../disk/fake-kernel.ts';
import { createFakeRunner, type Expectation } from './fixtures.ts';

const MiB = 1024 * 1024;
const DISK = '/dev/fake-disk9';
const UUID_RE = /^0:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const LAST_LBA = 6291422; // a 3 GiB disk with 512-byte sectors

interface Part { start: number; size: number; name?: string; uuid?: string }

// bootc's x86_64 layout: BIOS-BOOT 1 MiB, ESP 512 MiB, root leaving `tailMiB` free.
function bootcLayout(tailMiB: number): Part[] {
  return [
    { start: 2048, size: 2048, name: 'BIOS-BOOT', uuid: 'AAAAAAAA-0000-4000-8000-000000000001' },
    { start: 4096, size: 1048576, name: 'EFI-SYSTEM', uuid: 'AAAAAAAA-0000-4000-8000-000000000002' },
    { start: 1052672, size: LAST_LBA - tailMiB * 2048 - 1052672 + 1, name: 'root', uuid: 'AAAAAAAA-0000-4000-8000-000000000003' },
  ];
}

function sfdisk(parts: Part[], options: { label?: string; lastlba?: number; sectorsize?: number } = {}): string {
  return JSON.stringify({
    partitiontable: {
      label: options.label ?? 'gpt', device: DISK, unit: 'sectors', firstlba: 34,
      lastlba: options.lastlba ?? LAST_LBA, sectorsize: options.sectorsize ?? 512,
      partitions: parts.map((p, i) => ({ node: `${DISK}p${i + 1}`, start: p.start, size: p.size, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', uuid: p.uuid, name: p.name })),
    },
  });
}

function probes(parts: Part[], labels: Record<number, string> = {}): Expectation[] {
  return parts.map((p, i) => ({
    argv: ['blkid', '-p', '-o', 'export', '--', '-O', String(p.start * 512), '-S', String(p.size * 512), DISK],
    ...(labels[i + 1] ? { stdout: `LABEL=${labels[i + 1]}\nTYPE=vfat\n` } : { exitCode: 2 }),
  }));
}

const CLEAN_VERIFY = 'No problems found. 206814 free sectors (101.0 MiB) available in 2\nsegments, the largest of which is 204800 (100.0 MiB) in size.\n';

// The kernel's view of the disk (no partition parsers, no udev): sysfs as partx leaves it.
const sysfs = fakeSysfs();
after(() => sysfs.remove());
const KNAME = 'fake-disk9';

function kernelKnows(parts: Part[]): void {
  sysfs.set(KNAME, Object.fromEntries(parts.map((p, i): [number, Geometry[number]] => [i + 1, [p.start, p.size]])));
}

function deps(runner: PartitionDeps['runner'], nodes: Set<string>, extra: Partial<PartitionDeps> = {}): PartitionDeps {
  return { runner, log: createSilentLogger(), exists: async (p) => nodes.has(p), sleep: async () => undefined, sysRoot: sysfs.sysRoot, udev: false, ...extra };
}

// partx -a gives the kernel the table's partitions (the ones it has stay: exit 1), and the node appears.
function nodeSync(nodes: Set<string>, path: string, parts: () => Part[]): Expectation[] {
  return [{ argv: ['partx', '-a', '--', DISK], exitCode: 1, effect: () => { kernelKnows(parts()); nodes.add(path); } }];
}

describe('ensureConfigDrivePartition', () => {
  it('creates a 64 MiB partition ending at the last usable sector, named config-2 with a new PARTUUID', async () => {
    const layout = bootcLayout(100);
    const nodes = new Set<string>();
    let uuid = '';
    const runner = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(layout) },
      ...probes(layout),
      { argv: ['sgdisk', '-v', '--', DISK], stdout: CLEAN_VERIFY },
      {
        argv: ['sgdisk', '-n', `0:6158336:${LAST_LBA}`, '-t', '0:8300', '-c', '0:config-2', '-u', UUID_RE, '--', DISK],
        effect: (argv) => { uuid = argv[8]!.slice(2).toUpperCase(); },
      },
      { argv: ['sfdisk', '--json', '--', DISK], stdout: () => sfdisk([...layout, { start: 6158336, size: LAST_LBA - 6158336 + 1, name: 'config-2', uuid }]) },
      ...nodeSync(nodes, `${DISK}p4`, () => [...layout, { start: 6158336, size: LAST_LBA - 6158336 + 1 }]),
    ]);
    kernelKnows(layout);
    const part = await ensureConfigDrivePartition(DISK, 400_000, deps(runner, nodes));
    runner.done();
    assert.deepEqual(part, {
      device: DISK, path: `${DISK}p4`, number: 4, partuuid: uuid.toLowerCase(),
      start: 6158336 * 512, size: (LAST_LBA - 6158336 + 1) * 512, sectorSize: 512, created: true,
    });
    assert.ok(part.size >= 64 * MiB);
  });

  it('reuses a partition named or labelled config-2 (any case) without touching the table', async () => {
    for (const [parts, labels] of [
      [[...bootcLayout(100).slice(0, 3), { start: 6158336, size: 133087, name: 'CONFIG-2' }], {}],
      [[...bootcLayout(100).slice(0, 3), { start: 6158336, size: 133087, name: 'data' }], { 4: 'config-2' }],
    ] as const) {
      const nodes = new Set<string>();
      const runner = createFakeRunner([
        { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk([...parts]) },
        ...probes([...parts], labels),
        ...nodeSync(nodes, `${DISK}p4`, () => [...parts]),
      ]);
      kernelKnows(parts.slice(0, 3));
      const part = await ensureConfigDrivePartition(DISK, 400_000, deps(runner, nodes));
      runner.done();
      assert.deepEqual([part.path, part.created, part.start], [`${DISK}p4`, false, 6158336 * 512]);
    }
  });

  it('probes the partition node when the kernel already has it', async () => {
    const layout = bootcLayout(0).slice(0, 2);
    const nodes = new Set([`${DISK}p1`, `${DISK}p2`]);
    const runner = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(layout) },
      { argv: ['blkid', '-p', '-o', 'export', '--', `${DISK}p1`], exitCode: 2 },
      { argv: ['blkid', '-p', '-o', 'export', '--', `${DISK}p2`], stdout: 'LABEL=config\\ 2\nTYPE=vfat\n' },
      { argv: ['sgdisk', '-v', '--', DISK], stdout: CLEAN_VERIFY },
      { argv: ['sgdisk', '-n', /^0:\d+:6291422$/, '-t', '0:8300', '-c', '0:config-2', '-u', UUID_RE, '--', DISK], exitCode: 4, stderr: 'Could not create partition 3' },
    ]);
    await assert.rejects(ensureConfigDrivePartition(DISK, 1, deps(runner, nodes)), (err) => {
      assert.ok(isAgentError(err) && err.code === 'CONFIGDRIVE_WRITE_FAILED');
      assert.match(err.message, /Could not create partition 3/);
      assert.ok(Array.isArray(err.details.argv), 'keeps the failed argv');
      return true;
    });
    runner.done();
  });

  it('refuses two config-2 partitions, MBR disks and disks without a table', async () => {
    const two = [...bootcLayout(100).slice(0, 2), { start: 1052672, size: 2048, name: 'config-2' }, { start: 1054720, size: 2048 }];
    const cases: Array<[Expectation[], string, RegExp]> = [
      [[{ argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(two) }, ...probes(two, { 4: 'CONFIG-2' })],
        'PARTITION_TABLE_INVALID', /2 partitions labelled config-2 \(\/dev\/fake-disk9p3, \/dev\/fake-disk9p4\)/],
      [[{ argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(bootcLayout(100), { label: 'dos' }) }],
        'PARTITION_TABLE_INVALID', /"dos" partition table; only GPT/],
      [[{ argv: ['sfdisk', '--json', '--', DISK], exitCode: 1, stderr: `sfdisk: ${DISK}: does not contain a recognized partition table` }],
        'PARTITION_TABLE_INVALID', /Cannot read a partition table.*does not contain a recognized partition table/],
    ];
    for (const [script, code, pattern] of cases) {
      const runner = createFakeRunner(script);
      await assert.rejects(ensureConfigDrivePartition(DISK, 1, deps(runner, new Set())), (err) => {
        assert.ok(isAgentError(err));
        assert.equal(err.code, code);
        assert.match(err.message, pattern);
        return true;
      });
      runner.done();
    }
  });

  it('fails when less than 64 MiB is free at the end, naming the free space', async () => {
    const layout = bootcLayout(10);
    const runner = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(layout) },
      ...probes(layout),
      { argv: ['sgdisk', '-v', '--', DISK], stdout: CLEAN_VERIFY },
    ]);
    await assert.rejects(ensureConfigDrivePartition(DISK, 1, deps(runner, new Set())), (err) => {
      assert.ok(isAgentError(err) && err.code === 'CONFIGDRIVE_NO_SPACE');
      assert.match(err.message, /^Only 10\.0 MiB is free at the end of the disk, a config drive partition needs 64 MiB/);
      assert.equal(err.details.free_bytes, 10 * MiB);
      return true;
    });
    runner.done();
  });

  it('moves a misplaced backup GPT to the end (sgdisk -e) before planning', async () => {
    const layout = bootcLayout(0);
    const grown = 6553566; // the disk grew by 128 MiB
    const verify = "Problem: The secondary header's self-pointer indicates that it doesn't reside\nat the end of the disk. If you've added a disk to a RAID array, use the 'e'\noption on the experts' menu to adjust the secondary header's and partition\ntable's locations.\n\nIdentified 1 problems!\n";
    const nodes = new Set<string>();
    let uuid = '';
    const runner = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(layout) },
      ...probes(layout),
      { argv: ['sgdisk', '-v', '--', DISK], stdout: verify },
      { argv: ['sgdisk', '-e', '--', DISK] },
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(layout, { lastlba: grown }) },
      { argv: ['sgdisk', '-n', `0:6420480:${grown}`, '-t', '0:8300', '-c', '0:config-2', '-u', UUID_RE, '--', DISK], effect: (a) => { uuid = a[8]!.slice(2); } },
      { argv: ['sfdisk', '--json', '--', DISK], stdout: () => sfdisk([...layout, { start: 6420480, size: grown - 6420480 + 1, uuid }], { lastlba: grown }) },
      ...nodeSync(nodes, `${DISK}p4`, () => [...layout, { start: 6420480, size: grown - 6420480 + 1 }]),
    ]);
    kernelKnows(layout);
    const part = await ensureConfigDrivePartition(DISK, 1, deps(runner, nodes));
    runner.done();
    assert.equal(part.start + part.size, (grown + 1) * 512);
  });

  it('a stale partition 4 of an older table is replaced before the node is used; if it stays, CONFIGDRIVE_WRITE_FAILED', async () => {
    const parts = [...bootcLayout(100), { start: 6158336, size: 133087, name: 'config-2' }];
    const stale = [...bootcLayout(100), { start: 5000000, size: 133087 }];
    const nodes = new Set<string>();
    const runner = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(parts) },
      ...probes(parts),
      { argv: ['partx', '-d', '--', DISK], effect: () => kernelKnows([]) },
      { argv: ['partx', '-a', '--', DISK], effect: () => { kernelKnows(parts); nodes.add(`${DISK}p4`); } },
    ]);
    kernelKnows(stale);
    const part = await ensureConfigDrivePartition(DISK, 1, deps(runner, nodes));
    runner.done();
    assert.deepEqual([part.path, part.start], [`${DISK}p4`, 6158336 * 512]);

    const stuck = createFakeRunner([
      { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(parts) },
      ...probes(parts),
      ...Array.from({ length: 3 }, (): Expectation[] => [{ argv: ['partx', '-d', '--', DISK], exitCode: 1 }, { argv: ['partx', '-a', '--', DISK], exitCode: 1 }]).flat(),
    ]);
    kernelKnows(stale);
    await assert.rejects(ensureConfigDrivePartition(DISK, 1, deps(stuck, new Set())), (err) => {
      assert.ok(isAgentError(err) && err.code === 'CONFIGDRIVE_WRITE_FAILED');
      assert.match(err.message, /do not match its partition table: \/dev\/fake-disk9p4: kernel has start 2560000000 size 68140544, table has start 3153068032 size 68140544$/);
      return true;
    });
    stuck.done();
  });

  it('waits 15 × for the node, then fails; an abort stops the wait', async () => {
    const layout = [...bootcLayout(100), { start: 6158336, size: 133087, name: 'config-2' }];
    // The kernel takes the partition, but its node never shows up in /dev.
    const script = (): Expectation[] => {
      kernelKnows(layout.slice(0, 3));
      return [
        { argv: ['sfdisk', '--json', '--', DISK], stdout: sfdisk(layout) },
        ...probes(layout),
        { argv: ['partx', '-a', '--', DISK], exitCode: 1, stderr: 'partx: /dev/fake-disk9: error adding partitions 1-3', effect: () => kernelKnows(layout) },
      ];
    };
    const sleeps: number[] = [];
    const runner = createFakeRunner(script());
    await assert.rejects(
      ensureConfigDrivePartition(DISK, 1, deps(runner, new Set(), { sleep: async (ms) => { sleeps.push(ms); } })),
      /did not appear after 15 attempts/,
    );
    assert.deepEqual(sleeps, Array(14).fill(1000));
    const controller = new AbortController();
    const aborting = createFakeRunner(script());
    await assert.rejects(
      ensureConfigDrivePartition(DISK, 1, deps(aborting, new Set(), {
        signal: controller.signal,
        sleep: async () => { controller.abort(); throw new DOMException('aborted', 'AbortError'); },
      })),
      (err) => isAgentError(err) && err.code === 'CANCELLED',
    );
  });
});

describe('partition table helpers', () => {
  it('aligns the start to 1 MiB on 4096-byte sectors and never plans less than asked', () => {
    const table: PartitionTable = { label: 'gpt', firstLba: 6, lastLba: 786426, sectorSize: 4096, partitions: [{ node: 'x1', number: 1, start: 256, size: 700_000, type: null, partuuid: null, name: null }] };
    const plan = planTailPartition(table, 64 * MiB);
    assert.equal(plan.start % 256, 0);
    assert.equal(plan.end, 786426);
    assert.ok((plan.end - plan.start + 1) * 4096 >= 64 * MiB);
    // a tail of exactly 64 MiB that is not aligned: start right after the last partition
    const tight: PartitionTable = { ...table, sectorSize: 512, lastLba: 1000 + 131072, partitions: [{ node: 'x1', number: 1, start: 34, size: 967, type: null, partuuid: null, name: null }] };
    assert.deepEqual(planTailPartition(tight, 64 * MiB), { start: 1001, end: 1000 + 131072, freeBytes: 64 * MiB });
  });

  it('parses blkid export escapes and recognises sgdisk -v wording', () => {
    assert.deepEqual(parseBlkidExport('DEVNAME=/dev/x\nLABEL=config\\ 2\nAPPLICATION_ID=A\\ B\\\\C\n'), { DEVNAME: '/dev/x', LABEL: 'config 2', APPLICATION_ID: 'A B\\C' });
    assert.equal(backupHeaderMisplaced(CLEAN_VERIFY), false);
    assert.equal(backupHeaderMisplaced("The secondary header's self-pointer indicates that it doesn't reside\nat the end of the disk."), true);
  });
});
