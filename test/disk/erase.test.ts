import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { buildGptWipeArgs, buildLsblkArgs, eraseDevicesMetadata, gptSectors, wipeDisk, type BlockDevice } from '../../src/disk/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createLogger } from '../../src/log/index.ts';
import { createFakeRunner, type ScriptedCall } from '../helpers/fake-runner.ts';
import { fakeSysfs } from './fake-kernel.ts';

function disk(name: string, fields: Partial<BlockDevice> = {}): BlockDevice {
  return {
    name, model: null, size: 64 * 2 ** 20, rotational: false, wwn: null, serial: null, vendor: null, wwn_with_extension: null,
    wwn_vendor_extension: null, hctl: null, by_path: null, logical_sectors: 512, physical_sectors: 512, tran: null,
    removable: false, read_only: false, type: 'disk', ...fields,
  };
}

type Call = ScriptedCall & { argv: readonly string[] };

const sysfs = fakeSysfs();
after(() => sysfs.remove());

// The exact calls erasing one disk makes (IPA destroy_disk_metadata, plus partition handling).
// The disk's GPT has one 1 MiB partition per node, which the (fake) kernel knows; zapping the
// table leaves them stale, and partx -d drops them.
function script(dev: string, partitions: string[], sectorSize = 512, sizeBytes = 64 * 2 ** 20): Call[] {
  const kname = dev.slice('/dev/'.length);
  const rows = [{ kname, type: 'disk', size: sizeBytes }, ...partitions.map((p) => ({ kname: p.slice(5), type: 'part', size: 1024, pkname: kname }))];
  const table = {
    partitiontable: {
      label: 'gpt', firstlba: 34, lastlba: sizeBytes / 512 - 34, sectorsize: 512,
      partitions: partitions.map((node, i) => ({ node, start: 2048 * (i + 1), size: 2048, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4' })),
    },
  };
  sysfs.set(kname, Object.fromEntries(partitions.map((_, i) => [i + 1, [2048 * (i + 1), 2048]])));
  return [
    { argv: ['sfdisk', '--json', '--', dev], stdout: JSON.stringify(table) },
    { argv: ['lsblk', ...buildLsblkArgs(dev)], stdout: JSON.stringify({ blockdevices: rows }) },
    ...[...partitions].reverse().map((p) => ({ argv: ['wipefs', '--force', '--all', '--', p] })),
    { argv: ['wipefs', '--force', '--all', '--', dev] },
    { argv: ['blockdev', '--getss', dev], stdout: `${sectorSize}\n` },
    { argv: ['blockdev', '--getsize64', dev], stdout: `${sizeBytes}\n` },
    ...buildGptWipeArgs(dev, sectorSize, sizeBytes).map((args) => ({ argv: ['dd', ...args] })),
    { argv: ['sgdisk', '--zap-all', '--', dev] },
    ...(partitions.length > 0 ? [{ argv: ['partx', '-d', '--', dev], respond: () => { sysfs.set(kname, {}); return {}; } }] : []),
  ];
}

const kernel = { sysRoot: sysfs.sysRoot, udev: false };

describe('buildGptWipeArgs', () => {
  test('512-byte sectors: 33 sectors at both ends (IPA)', () => {
    assert.equal(gptSectors(512), 33);
    assert.deepEqual(buildGptWipeArgs('/dev/sda', 512, 524288 * 512), [
      ['bs=512', 'if=/dev/zero', 'of=/dev/sda', 'count=33', 'oflag=direct'],
      ['bs=512', 'if=/dev/zero', 'of=/dev/sda', 'count=33', 'oflag=direct', 'seek=524255'],
    ]);
  });
  test('4096-byte sectors: 5 sectors (IPA)', () => {
    assert.equal(gptSectors(4096), 5);
    assert.deepEqual(buildGptWipeArgs('/dev/nvme0n1', 4096, 524288), [
      ['bs=4096', 'if=/dev/zero', 'of=/dev/nvme0n1', 'count=5', 'oflag=direct'],
      ['bs=4096', 'if=/dev/zero', 'of=/dev/nvme0n1', 'count=5', 'oflag=direct', 'seek=123'],
    ]);
  });
  test('a device smaller than a GPT (an EBR of 2 sectors) is zeroed once, whole', () => {
    assert.deepEqual(buildGptWipeArgs('/dev/sda5', 512, 1024), [['bs=512', 'if=/dev/zero', 'of=/dev/sda5', 'count=2', 'oflag=direct']]);
  });
});

describe('eraseDevicesMetadata', () => {
  test('partitions first (highest first), then the disk, then stale partition nodes are dropped', async () => {
    const runner = createFakeRunner(script('/dev/sda', ['/dev/sda1', '/dev/sda2']), { ordered: true });
    const result = await eraseDevicesMetadata({ runner, devices: [disk('/dev/sda')], ...kernel });
    assert.deepEqual(result, { erased: ['/dev/sda'], skipped: [] });
    runner.assertDone();
    assert.deepEqual(runner.commandLines().slice(2, 5), [
      'wipefs --force --all -- /dev/sda2',
      'wipefs --force --all -- /dev/sda1',
      'wipefs --force --all -- /dev/sda',
    ]);
  });

  test('4096-byte sectors and no partitions: no partx -d', async () => {
    const runner = createFakeRunner(script('/dev/nvme0n1', [], 4096, 4096 * 1000), { ordered: true });
    await eraseDevicesMetadata({ runner, devices: [disk('/dev/nvme0n1')], ...kernel });
    runner.assertDone();
    assert.ok(runner.commandLines().includes('dd bs=4096 if=/dev/zero of=/dev/nvme0n1 count=5 oflag=direct seek=995'));
  });

  test('removable and read-only disks are skipped without running anything', async () => {
    const runner = createFakeRunner([]);
    const result = await eraseDevicesMetadata({
      runner,
      devices: [disk('/dev/sdb', { removable: true }), disk('/dev/sr0', { read_only: true, removable: true })],
    });
    assert.deepEqual(result, { erased: [], skipped: [{ name: '/dev/sdb', reason: 'removable' }, { name: '/dev/sr0', reason: 'read-only' }] });
    assert.equal(runner.calls.length, 0);
  });

  test('partx failures are ignored (no partition table, nothing to delete)', async () => {
    const calls = script('/dev/vdb', ['/dev/vdb1']).map((c) => (c.argv[0] === 'partx' ? { argv: c.argv, exitCode: 1, stderr: 'partx: /dev/vdb: failed to read partition table', times: Infinity } : c));
    const runner = createFakeRunner(calls, { ordered: true });
    assert.deepEqual(await eraseDevicesMetadata({ runner, devices: [disk('/dev/vdb')], ...kernel }), { erased: ['/dev/vdb'], skipped: [] });
  });

  test('every disk is tried; failures are reported together with their stderr', async () => {
    const sda = script('/dev/sda', []).map((c) => (c.argv[0] === 'sgdisk' ? { ...c, exitCode: 2, stderr: 'Problem opening /dev/sda for writing!' } : c));
    const sdb = script('/dev/sdb', []);
    const sdc = script('/dev/sdc', []).map((c) => (c.argv[1] === '--getss' ? { ...c, stdout: 'garbage' } : c));
    const runner = createFakeRunner([...sda, ...sdb, ...sdc]);
    await assert.rejects(eraseDevicesMetadata({ runner, devices: [disk('/dev/sda'), disk('/dev/sdb'), disk('/dev/sdc')], ...kernel }), (err: unknown) => {
      assert.ok(isAgentError(err));
      assert.equal(err.code, 'BLOCK_DEVICE_ERROR');
      assert.match(err.message, /^Failed to erase the metadata on the device\(s\): "\/dev\/sda": sgdisk exited with code 2: Problem opening \/dev\/sda for writing!; "\/dev\/sdc": blockdev --getss \/dev\/sdc printed "garbage"$/);
      const failed = err.details['failed'] as Record<string, Record<string, unknown>>;
      assert.deepEqual(Object.keys(failed), ['/dev/sda', '/dev/sdc']);
      assert.equal(failed['/dev/sda']?.['stderr_tail'], 'Problem opening /dev/sda for writing!');
      assert.deepEqual(failed['/dev/sda']?.['argv'], ['sgdisk', '--zap-all', '--', '/dev/sda']);
      assert.deepEqual(err.details['erased'], ['/dev/sdb']);
      return true;
    });
    // sdb was erased completely even though sda failed before it.
    assert.ok(runner.commandLines().includes('sgdisk --zap-all -- /dev/sdb'));
  });

  test('a name outside /dev is refused before any command runs', async () => {
    const runner = createFakeRunner([]);
    await assert.rejects(eraseDevicesMetadata({ runner, devices: [disk('/tmp/disk.img')], ...kernel }), {
      code: 'BLOCK_DEVICE_ERROR',
      message: /Refusing to erase "\/tmp\/disk.img"/,
    });
    assert.equal(runner.calls.length, 0);
  });

  test('cancellation stops at once instead of being collected', async () => {
    const controller = new AbortController();
    controller.abort();
    const runner = createFakeRunner([{ argv: () => true, times: Infinity }]);
    await assert.rejects(eraseDevicesMetadata({ runner, devices: [disk('/dev/sda'), disk('/dev/sdb')], signal: controller.signal, ...kernel }), {
      code: 'CANCELLED',
    });
    assert.equal(runner.calls.length, 1);
  });
});

describe('wipeDisk', () => {
  function capture(): { log: ReturnType<typeof createLogger>; records: Array<Record<string, unknown>> } {
    const records: Array<Record<string, unknown>> = [];
    return { log: createLogger({ level: 'debug', stream: { write: (line: string) => { records.push(JSON.parse(line) as Record<string, unknown>); } } }), records };
  }

  test('erases the disk like the clean step does and says "wiped"', async () => {
    const runner = createFakeRunner(script('/dev/sda', ['/dev/sda1', '/dev/sda2']), { ordered: true });
    const { log, records } = capture();
    assert.equal(await wipeDisk(runner, '/dev/sda', { log, ...kernel }), 'wiped');
    runner.assertDone();
    assert.ok(records.some((r) => r['msg'] === 'disk wiped after the failed deploy' && r['device'] === '/dev/sda'));
  });

  test('never throws: a failing wipe is described, and logged as DISK_WIPE_FAILED', async () => {
    const calls = script('/dev/sdb', []).map((c) => (c.argv[0] === 'sgdisk' ? { ...c, exitCode: 2, stderr: 'Problem opening /dev/sdb for writing!' } : c));
    const { log, records } = capture();
    const outcome = await wipeDisk(createFakeRunner(calls), '/dev/sdb', { log, ...kernel });
    assert.match(outcome, /^\[COMMAND_FAILED\] sgdisk exited with code 2: Problem opening \/dev\/sdb for writing!; argv=\["sgdisk","--zap-all","--","\/dev\/sdb"\]/);
    const logged = records.find((r) => r['msg'] === 'disk state unknown');
    assert.equal((logged?.['err'] as { code?: string } | undefined)?.code, 'DISK_WIPE_FAILED');
    assert.equal(await wipeDisk(createFakeRunner([]), '/tmp/disk.img', { log, ...kernel }), '[BLOCK_DEVICE_ERROR] Refusing to erase "/tmp/disk.img": not a /dev path');
  });

  test('a disk whose table the kernel does not know yet: its partitions are added first, so their signatures are wiped', async () => {
    const calls = script('/dev/sdd', ['/dev/sdd1']);
    sysfs.set('sdd', {});
    calls.splice(1, 0, { argv: ['partx', '-a', '--', '/dev/sdd'], respond: () => { sysfs.set('sdd', { 1: [2048, 2048] }); return {}; } });
    const runner = createFakeRunner(calls, { ordered: true });
    assert.equal(await wipeDisk(runner, '/dev/sdd', { log: capture().log, ...kernel }), 'wiped');
    runner.assertDone();
    assert.ok(runner.commandLines().includes('wipefs --force --all -- /dev/sdd1'));
    assert.deepEqual(sysfs.names('sdd'), []);
  });
});
