import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  describePartitions, freeTailBytes, parseSfdiskJson, partitionBytes, partitionNodePath, partitionUuids, readPartitionTable,
  readPartitionTableIfAny, usedEndSector, type PartitionTable,
} from '../../src/disk/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createFakeRunner, notInstalled } from '../helpers/fake-runner.ts';

const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const PREP = '9E1A2D38-C612-4316-AA26-8B49521E5A8B';
const LINUX = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';

// What sfdisk 2.38 prints for bootc's x86_64 layout on a 2 GiB loop device (and the keys it
// adds that nobody reads).
const GPT = JSON.stringify({
  partitiontable: {
    label: 'gpt', id: 'A10C28B5-EDFF-473D-8A78-743E7F5BC975', device: '/dev/loop0', unit: 'sectors',
    firstlba: 34, lastlba: 4194270, sectorsize: 512,
    partitions: [
      { node: '/dev/loop0p1', start: 2048, size: 2048, type: '21686148-6449-6E6F-744E-656564454649', uuid: 'AAAAAAAA-0000-4000-8000-000000000001', name: 'BIOS-BOOT' },
      { node: '/dev/loop0p2', start: 4096, size: 1048576, type: ESP.toLowerCase(), uuid: 'AAAAAAAA-0000-4000-8000-000000000002', name: 'EFI-SYSTEM' },
      { node: '/dev/loop0p3', start: 1052672, size: 3000000, type: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709', uuid: 'AAAAAAAA-0000-4000-8000-000000000003', name: 'root', attrs: 'LegacyBIOSBootable' },
    ],
  },
});

// An MBR with an extended partition and two logical ones: no first/last LBA, no UUIDs, no names.
const MBR = JSON.stringify({
  partitiontable: {
    label: 'dos', id: '0xf68b9b62', device: '/dev/loop0', unit: 'sectors', sectorsize: 512,
    partitions: [
      { node: '/dev/loop0p1', start: 2048, size: 102400, type: '83' },
      { node: '/dev/loop0p2', start: 104448, size: 307200, type: '5' },
      { node: '/dev/loop0p5', start: 106496, size: 61440, type: '83' },
      { node: '/dev/loop0p6', start: 169984, size: 61440, type: '83' },
    ],
  },
});

describe('parseSfdiskJson', () => {
  test('a GPT: sectors as sfdisk counts them, type GUIDs upper-case, PARTUUIDs lower-case', () => {
    const table = parseSfdiskJson(GPT);
    assert.deepEqual([table.label, table.sectorSize, table.firstLba, table.lastLba], ['gpt', 512, 34, 4194270]);
    assert.deepEqual(table.partitions[1], {
      node: '/dev/loop0p2', number: 2, start: 4096, size: 1048576, type: ESP, partuuid: 'aaaaaaaa-0000-4000-8000-000000000002', name: 'EFI-SYSTEM',
    });
    assert.deepEqual(partitionBytes(table, table.partitions[1]!), { start: 4096 * 512, size: 512 * 2 ** 20 });
  });

  test('an MBR: no last usable sector, no PARTUUIDs or names; logical partitions keep their numbers', () => {
    const table = parseSfdiskJson(MBR);
    assert.equal(table.lastLba, null);
    assert.deepEqual(table.partitions.map((p) => [p.number, p.type, p.partuuid, p.name]), [
      [1, '83', null, null], [2, '5', null, null], [5, '83', null, null], [6, '83', null, null],
    ]);
  });

  test('sectorsize defaults to 512 (sfdisk before 2.36) and a table may have no partitions', () => {
    const table = parseSfdiskJson('{"partitiontable":{"label":"gpt","firstlba":34,"lastlba":1000}}');
    assert.deepEqual([table.sectorSize, table.partitions], [512, []]);
  });

  test('not JSON or the wrong shape: PARTITION_TABLE_INVALID, or the code the caller asks for', () => {
    assert.throws(() => parseSfdiskJson('sfdisk: cannot open /dev/sdz'), { code: 'PARTITION_TABLE_INVALID', message: 'sfdisk --json printed output that is not JSON' });
    assert.throws(() => parseSfdiskJson('{"partitiontable":{"partitions":[]}}'), { code: 'PARTITION_TABLE_INVALID', message: /^sfdisk --json output has an unexpected shape/ });
    assert.throws(() => parseSfdiskJson('{"partitiontable":{"label":"gpt","partitions":[{"node":"/dev/x1","start":-1,"size":1}]}}', 'PARTITION_VALIDATION_FAILED'), {
      code: 'PARTITION_VALIDATION_FAILED',
    });
  });
});

describe('readPartitionTable', () => {
  test('runs sfdisk --json on the device', async () => {
    const runner = createFakeRunner([{ argv: ['sfdisk', '--json', '--', '/dev/loop0'], stdout: GPT }]);
    const table = await readPartitionTable(runner, '/dev/loop0');
    assert.equal(table.partitions.length, 3);
    runner.assertDone();
  });

  test('a disk without a table: the caller\'s code and context, sfdisk\'s words and details kept', async () => {
    const runner = createFakeRunner([{ argv: ['sfdisk', '--json', '--', '/dev/sdb'], exitCode: 1, stderr: 'sfdisk: /dev/sdb: does not contain a recognized partition table' }]);
    await assert.rejects(readPartitionTable(runner, '/dev/sdb', { code: 'PARTITION_VALIDATION_FAILED', context: 'after install' }), (err: unknown) => {
      assert.ok(isAgentError(err));
      assert.equal(err.code, 'PARTITION_VALIDATION_FAILED');
      assert.equal(err.message, 'Cannot read a partition table from /dev/sdb after install: sfdisk exited with code 1: sfdisk: /dev/sdb: does not contain a recognized partition table');
      assert.deepEqual(err.details['argv'], ['sfdisk', '--json', '--', '/dev/sdb']);
      return true;
    });
  });

  test('cancellation and a missing sfdisk keep their own codes', async () => {
    const controller = new AbortController();
    controller.abort();
    const cancelled = createFakeRunner([{ argv: () => true }]);
    await assert.rejects(readPartitionTable(cancelled, '/dev/sda', { signal: controller.signal, code: 'PARTITION_VALIDATION_FAILED' }), { code: 'CANCELLED' });
    const missing = createFakeRunner([{ argv: () => true, error: notInstalled('sfdisk') }]);
    await assert.rejects(readPartitionTable(missing, '/dev/sda'), { code: 'COMMAND_NOT_FOUND' });
  });

  test('readPartitionTableIfAny: null for a disk without a table, the table otherwise, cancellation still throws', async () => {
    const none = createFakeRunner([{ argv: () => true, exitCode: 1, stderr: 'does not contain a recognized partition table' }]);
    assert.equal(await readPartitionTableIfAny(none, '/dev/sdb'), null);
    const some = createFakeRunner([{ argv: () => true, stdout: MBR }]);
    assert.equal((await readPartitionTableIfAny(some, '/dev/sdb'))?.label, 'dos');
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(readPartitionTableIfAny(createFakeRunner([{ argv: () => true }]), '/dev/sdb', { signal: controller.signal }), { code: 'CANCELLED' });
  });
});

describe('partition table helpers', () => {
  test('names partition nodes the way the kernel does', () => {
    assert.equal(partitionNodePath('/dev/sda', 4), '/dev/sda4');
    assert.equal(partitionNodePath('/dev/vdb', 1), '/dev/vdb1');
    assert.equal(partitionNodePath('/dev/nvme0n1', 4), '/dev/nvme0n1p4');
    assert.equal(partitionNodePath('/dev/loop3', 2), '/dev/loop3p2');
    assert.equal(partitionNodePath('/dev/mmcblk0', 5), '/dev/mmcblk0p5');
    assert.equal(partitionNodePath('loop3', 2), 'loop3p2');
  });

  test('free tail: up to the last usable sector on GPT; on MBR the disk size less a GPT stands in', () => {
    const gpt = parseSfdiskJson(GPT);
    assert.equal(usedEndSector(gpt), 1052672 + 3000000);
    assert.equal(freeTailBytes(gpt), (4194270 + 1 - 4052672) * 512);
    const mbr = parseSfdiskJson(MBR);
    assert.equal(freeTailBytes(mbr, 256 * 2 ** 20), 256 * 2 ** 20 - 33 * 512 - (104448 + 307200) * 512);
    const empty: PartitionTable = { ...gpt, partitions: [] };
    assert.equal(freeTailBytes(empty), (4194270 + 1 - 34) * 512);
    const full: PartitionTable = { ...gpt, lastLba: 4052671 };
    assert.equal(freeTailBytes(full), 0);
  });

  test('the bootc step\'s partition list: bytes, and no partuuid or name keys where there are none', () => {
    const [first] = describePartitions(parseSfdiskJson(GPT));
    assert.deepEqual(first, {
      node: '/dev/loop0p1', number: 1, start_bytes: 2048 * 512, size_bytes: 2048 * 512,
      type: '21686148-6449-6E6F-744E-656564454649', partuuid: 'aaaaaaaa-0000-4000-8000-000000000001', name: 'BIOS-BOOT',
    });
    const logical = describePartitions(parseSfdiskJson(MBR))[2];
    assert.equal(JSON.stringify(logical), JSON.stringify({ node: '/dev/loop0p5', number: 5, start_bytes: 106496 * 512, size_bytes: 61440 * 512, type: '83' }));
  });

  test('IPA partition UUIDs: root by name (else the last partition), the ESP and PReP by type', () => {
    const table = parseSfdiskJson(GPT);
    assert.deepEqual(partitionUuids(table), {
      'root uuid': 'aaaaaaaa-0000-4000-8000-000000000003',
      'efi system partition uuid': 'aaaaaaaa-0000-4000-8000-000000000002',
    });
    const ppc: PartitionTable = {
      ...table,
      partitions: [
        { node: '/dev/sda1', number: 1, start: 2048, size: 8192, type: PREP, partuuid: 'p-1', name: 'PowerPC-PReP-boot' },
        { node: '/dev/sda2', number: 2, start: 10240, size: 8192, type: LINUX, partuuid: 'p-2', name: 'boot' },
        { node: '/dev/sda3', number: 3, start: 18432, size: 8192, type: LINUX, partuuid: 'p-3', name: null },
      ],
    };
    assert.deepEqual(partitionUuids(ppc), { 'root uuid': 'p-3', 'PReP Boot partition uuid': 'p-1' });
    assert.deepEqual(partitionUuids(parseSfdiskJson(MBR)), {});
  });
});
