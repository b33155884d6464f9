import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { machine } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { buildLsblkArgs } from '../../src/disk/index.ts';
import { collectInventory, Inventory, physicalMemoryMb, type CollectInventoryOptions } from '../../src/hardware/index.ts';
import { createFakeRunner, notInstalled, type ScriptedCall } from '../helpers/fake-runner.ts';
import { createFakeTree, type FakeTree } from '../helpers/fake-tree.ts';
import { fakeSystemInfo, PROCFS, SYSFS } from './fake-machine.ts';

const LSBLK: ScriptedCall = {
  argv: ['lsblk', ...buildLsblkArgs()],
  stdout: readFileSync(new URL('../fixtures/lsblk-sata-sas-nvme.json', import.meta.url), 'utf8'),
};
const IPMI: ScriptedCall[] = [
  { argv: ['ipmitool', 'lan', 'print'], stdout: 'IP Address Source       : DHCP Address\nIP Address              : 10.0.0.9\n' },
  { argv: ['ipmitool', 'lan6', 'print'], exitCode: 1, stderr: 'Invalid channel' },
];

describe('collectInventory (fake machine)', () => {
  let sys: FakeTree;
  let proc: FakeTree;
  let uefiSys: FakeTree;

  before(async () => {
    sys = await createFakeTree(SYSFS, 'hw-sys-');
    uefiSys = await createFakeTree({ ...SYSFS, 'firmware/efi/efivars': { dir: true } }, 'hw-sys-efi-');
    proc = await createFakeTree(PROCFS, 'hw-proc-');
  });
  after(async () => {
    await Promise.all([sys.cleanup(), uefiSys.cleanup(), proc.cleanup()]);
  });

  function options(overrides: Partial<CollectInventoryOptions> = {}): CollectInventoryOptions {
    return {
      runner: createFakeRunner([LSBLK, ...IPMI]),
      sysRoot: sys.root,
      procRoot: proc.root,
      byPathDir: '/nonexistent/by-path',
      systemInfo: fakeSystemInfo(),
      hostname: () => 'node-7.example.com',
      bootif: '01-b4-96-91-aa-bb-cc',
      ...overrides,
    };
  }

  test('the IPA inventory, field by field', async () => {
    const inventory = await collectInventory(options());
    assert.deepEqual(Object.keys(inventory), ['interfaces', 'cpu', 'disks', 'memory', 'bmc_address', 'bmc_v6address', 'system_vendor', 'boot', 'hostname']);
    assert.deepEqual(inventory.interfaces.map((i) => [i.name, i.mac_address, i.ipv4_address, i.ipv6_address]), [
      ['eno1', 'b4:96:91:aa:bb:cc', null, null],
      ['eno1.100', 'b4:96:91:aa:bb:cc', null, 'fe80::b696:91ff:feaa:bbcc'],
      ['eth0', '02:fc:00:00:00:01', '192.0.2.2', 'fd00::2'],
    ]);
    assert.deepEqual(inventory.cpu, {
      model_name: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz',
      frequency: '3200.0000',
      count: 128,
      architecture: machine(),
      flags: ['fpu', 'vme', 'de', 'pse', 'tsc'],
      socket_count: 2,
    });
    assert.deepEqual(inventory.disks[0], {
      name: '/dev/sda', model: 'Samsung SSD 860 EVO 500GB', size: 500107862016, rotational: false,
      wwn: '0x5002538e40a1b2c3', serial: 'S3Z9NB0K123456A', vendor: 'ATA', wwn_with_extension: '0x5002538e40a1b2c3',
      wwn_vendor_extension: null, hctl: '0:0:0:0', by_path: null, logical_sectors: 512, physical_sectors: 512, tran: 'sata',
    });
    assert.deepEqual(inventory.disks.map((d) => d.name), ['/dev/sda', '/dev/sdb', '/dev/nvme0n1']);
    assert.deepEqual(inventory.memory, { total: 270_000_000_000, physical_mb: 262144 });
    assert.equal(inventory.bmc_address, '10.0.0.9');
    assert.equal(inventory.bmc_v6address, null);
    assert.deepEqual(inventory.system_vendor, {
      product_name: 'SYS-120U-TNR',
      serial_number: 'S123456X1',
      manufacturer: 'Supermicro',
      firmware: { vendor: 'American Megatrends International, LLC.', version: '1.4', build_date: '2022-08-26' },
    });
    assert.deepEqual(inventory.boot, { current_boot_mode: 'bios', pxe_interface: '01-b4-96-91-aa-bb-cc' });
    assert.equal(inventory.hostname, 'node-7.example.com');
    assert.ok(Inventory.safeParse(inventory).success);
  });

  test('UEFI when /sys/firmware/efi exists; no BOOTIF is null', async () => {
    const inventory = await collectInventory(options({ sysRoot: uefiSys.root, bootif: undefined }));
    assert.deepEqual(inventory.boot, { current_boot_mode: 'uefi', pxe_interface: null });
  });

  test('a VM without DMI: placeholders become empty strings, memory rounded up to 128 MiB', async () => {
    const systemInfo = fakeSystemInfo({
      mem: async () => ({ total: 25276510208 }),
      memLayout: async () => [{ size: 25276510208, type: '', bank: '' }],
      system: async () => ({ manufacturer: '', model: 'Docker Container', serial: '-' }),
      bios: async () => ({ vendor: '', version: '', releaseDate: '' }),
      cpu: async () => ({ manufacturer: 'Intel', brand: 'Xeon® Processor', speed: 2.8, speedMax: 0, cores: 2, processors: 1 }),
    });
    const inventory = await collectInventory(options({ systemInfo, procRoot: '/nonexistent/proc' }));
    assert.deepEqual(inventory.memory, { total: 25276510208, physical_mb: 24192 });
    assert.deepEqual(inventory.system_vendor, { product_name: '', serial_number: '', manufacturer: '', firmware: { vendor: '', version: '', build_date: '' } });
    assert.equal(inventory.cpu.model_name, 'Intel Xeon® Processor');
    assert.equal(inventory.cpu.frequency, '2800.0000');
  });

  test('no ipmitool: null BMC addresses; skipBmcDetect does not even ask', async () => {
    const missing = await collectInventory(options({ runner: createFakeRunner([LSBLK, { argv: ['ipmitool', 'lan', 'print'], error: notInstalled('ipmitool') }]) }));
    assert.equal(missing.bmc_address, null);
    const runner = createFakeRunner([LSBLK]);
    const skipped = await collectInventory(options({ runner, skipBmcDetect: true }));
    assert.equal(skipped.bmc_address, null);
    assert.deepEqual(runner.commandLines().map((l) => l.split(' ')[0]), ['lsblk']);
  });

  test('a failing part is INVENTORY_FAILED with the cause', async () => {
    const runner = createFakeRunner([{ argv: LSBLK.argv, exitCode: 1, stderr: 'lsblk: failed' }, ...IPMI]);
    await assert.rejects(collectInventory(options({ runner })), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'INVENTORY_FAILED');
      assert.match((err as Error).message, /lsblk: failed/);
      assert.equal(((err as Error).cause as { code?: string }).code, 'BLOCK_DEVICE_ERROR');
      return true;
    });
    const systemInfo = fakeSystemInfo({ mem: async () => { throw new Error('no /proc/meminfo'); } });
    await assert.rejects(collectInventory(options({ systemInfo })), { code: 'INVENTORY_FAILED', message: /no \/proc\/meminfo/ });
  });

  test('a result that does not fit the schema is INVENTORY_FAILED', async () => {
    const systemInfo = fakeSystemInfo({
      cpu: async () => ({ manufacturer: '', brand: '', speed: 0, speedMax: 0, cores: 0, processors: 0 }),
    });
    await assert.rejects(collectInventory(options({ systemInfo })), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'INVENTORY_FAILED');
      assert.match((err as Error).message, /malformed/);
      return true;
    });
  });

  test('cancellation', async () => {
    await assert.rejects(collectInventory(options({ signal: AbortSignal.abort() })), { code: 'CANCELLED' });
  });
});

describe('physicalMemoryMb', () => {
  test('sum of DIMMs, empty slots ignored', () => {
    assert.equal(physicalMemoryMb([{ size: 16 * 2 ** 30, type: 'DDR4', bank: 'A' }, { size: 0, type: 'Empty', bank: 'B' }, { size: 16 * 2 ** 30, type: 'DDR4', bank: 'C' }], 1), 32768);
  });
  test('no DIMM table: total rounded up to a multiple of 128 MiB', () => {
    assert.equal(physicalMemoryMb([], 128 * 2 ** 20), 128);
    assert.equal(physicalMemoryMb([], 128 * 2 ** 20 + 1), 256);
  });
});
