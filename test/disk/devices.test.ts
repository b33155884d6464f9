import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  buildLsblkArgs,
  listBlockDevices,
  parseLsblkJson,
  readByPathLinks,
  selectDiskRows,
  splitWwn,
  toBlockDevice,
} from '../../src/disk/index.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
}

function diskNames(name: string, includeLoop = false): string[] {
  return selectDiskRows(parseLsblkJson(fixture(name)), includeLoop).map((r) => r.kname);
}

describe('selectDiskRows', () => {
  test('disks only: partitions and CD drives are left out', () => {
    assert.deepEqual(diskNames('lsblk-sata-sas-nvme.json'), ['sda', 'sdb', 'nvme0n1']);
  });
  test('removable disks stay (IPA lists USB disks); floppies and empty drives go', () => {
    assert.deepEqual(diskNames('lsblk-removable.json'), ['sda', 'sdb']);
  });
  test('zero-size devices, RAM disks and zram are skipped', () => {
    assert.deepEqual(diskNames('lsblk-zero-size.json'), ['vdb']);
  });
  test('loop devices only on request, and only attached ones', () => {
    assert.deepEqual(diskNames('lsblk-vm-loop-partitions.json'), ['vda']);
    assert.deepEqual(diskNames('lsblk-vm-loop-partitions.json', true), ['loop0', 'loop1', 'vda']);
  });
  test('multipath: the map is the disk, its member paths are not; RAID volumes are disks', () => {
    assert.deepEqual(diskNames('lsblk-tree-multipath.json'), ['dm-0', 'sda', 'md0']);
  });
});

describe('splitWwn', () => {
  const CASES: [string | null, ReturnType<typeof splitWwn>][] = [
    [null, { wwn: null, wwn_with_extension: null, wwn_vendor_extension: null }],
    ['0x5002538e40a1b2c3', { wwn: '0x5002538e40a1b2c3', wwn_with_extension: '0x5002538e40a1b2c3', wwn_vendor_extension: null }],
    ['0x600508b1001c4b712b3a4b9c7e8e5cd5', { wwn: '0x600508b1001c4b71', wwn_with_extension: '0x600508b1001c4b712b3a4b9c7e8e5cd5', wwn_vendor_extension: '0x2b3a4b9c7e8e5cd5' }],
    ['naa.5000c500a1b2c3d4', { wwn: '0x5000c500a1b2c3d4', wwn_with_extension: '0x5000c500a1b2c3d4', wwn_vendor_extension: null }],
    ['eui.0025388b71b0c4d2', { wwn: 'eui.0025388b71b0c4d2', wwn_with_extension: 'eui.0025388b71b0c4d2', wwn_vendor_extension: null }],
  ];
  for (const [raw, expected] of CASES) {
    test(String(raw), () => assert.deepEqual(splitWwn(raw), expected));
  }
});

describe('listBlockDevices (fake lsblk, fake sysfs)', () => {
  let root: string;
  let sysRoot: string;
  let byPathDir: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'disk-devices-'));
    sysRoot = join(root, 'sys');
    byPathDir = join(root, 'by-path');
    await mkdir(join(sysRoot, 'block', 'sda', 'device'), { recursive: true });
    await writeFile(join(sysRoot, 'block', 'sda', 'device', 'vendor'), 'ATA     \n');
    await mkdir(join(sysRoot, 'block', 'sdb', 'device'), { recursive: true });
    await writeFile(join(sysRoot, 'block', 'sdb', 'device', 'vendor'), 'HPE     \n');
    await mkdir(join(sysRoot, 'block', 'vdb', 'device', 'scsi_device', '2:0:0:0'), { recursive: true });
    await mkdir(join(sysRoot, 'block', 'vdc', 'queue'), { recursive: true });
    await writeFile(join(sysRoot, 'block', 'vdc', 'ro'), '1\n');
    await writeFile(join(sysRoot, 'block', 'vdc', 'removable'), '0\n');
    await writeFile(join(sysRoot, 'block', 'vdc', 'queue', 'rotational'), '1\n');
    await mkdir(byPathDir);
    await symlink('/dev/sda', join(byPathDir, 'pci-0000:00:17.0-ata-1'));
    await symlink('/dev/sda1', join(byPathDir, 'pci-0000:00:17.0-ata-1-part1'));
    await writeFile(join(byPathDir, 'not-a-link'), '');
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('IPA-shaped disks from lsblk, sysfs vendor preferred, by-path links attached', async () => {
    const runner = createFakeRunner([{ argv: ['lsblk', ...buildLsblkArgs()], stdout: fixture('lsblk-sata-sas-nvme.json') }]);
    const devices = await listBlockDevices({ runner, sysRoot, byPathDir });
    runner.assertDone();
    assert.deepEqual(devices.map((d) => d.name), ['/dev/sda', '/dev/sdb', '/dev/nvme0n1']);
    assert.deepEqual(devices[0], {
      name: '/dev/sda', model: 'Samsung SSD 860 EVO 500GB', size: 500107862016, rotational: false,
      wwn: '0x5002538e40a1b2c3', serial: 'S3Z9NB0K123456A', vendor: 'ATA', wwn_with_extension: '0x5002538e40a1b2c3',
      wwn_vendor_extension: null, hctl: '0:0:0:0', by_path: join(byPathDir, 'pci-0000:00:17.0-ata-1'),
      logical_sectors: 512, physical_sectors: 512, tran: 'sata', removable: false, read_only: false, type: 'disk',
    });
    assert.equal(devices[1]?.vendor, 'HPE');
    assert.equal(devices[1]?.wwn_vendor_extension, '0x2b3a4b9c7e8e5cd5');
    assert.equal(devices[1]?.physical_sectors, 4096);
    assert.equal(devices[2]?.vendor, null);
    assert.equal(devices[2]?.wwn, 'eui.0025388b71b0c4d2');
    assert.equal(devices[2]?.by_path, null);
  });

  test('HCTL comes from sysfs when lsblk has none', async () => {
    const runner = createFakeRunner([{ argv: ['lsblk', ...buildLsblkArgs()], stdout: fixture('lsblk-zero-size.json') }]);
    const [vdb] = await listBlockDevices({ runner, sysRoot, byPathDir: join(root, 'missing') });
    assert.equal(vdb?.hctl, '2:0:0:0');
    assert.equal(vdb?.vendor, '0x1af4');
  });

  test('read-only, removable and rotational fall back to sysfs', async () => {
    const row = parseLsblkJson('{"blockdevices":[{"kname":"vdc","size":1073741824,"type":"disk"}]}')[0];
    assert.ok(row);
    const device = await toBlockDevice(row, sysRoot, new Map());
    assert.equal(device.read_only, true);
    assert.equal(device.removable, false);
    assert.equal(device.rotational, true);
  });

  test('a missing by-path directory is an empty map', async () => {
    assert.equal((await readByPathLinks(join(root, 'nowhere'))).size, 0);
    const links = await readByPathLinks(byPathDir);
    assert.deepEqual([...links.keys()], ['/dev/sda', '/dev/sda1']);
  });
});
