import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { buildLsblkArgs, parseLsblkJson, runLsblk } from '../../src/disk/index.ts';
import { CommandFailedError, isAgentError } from '../../src/errors.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';

const COLUMNS = 'KNAME,MODEL,SIZE,ROTA,TYPE,UUID,PARTUUID,SERIAL,WWN,LOG-SEC,PHY-SEC,TRAN,RM,RO,HCTL,VENDOR,LABEL,PARTLABEL,PKNAME';

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
}

describe('buildLsblkArgs', () => {
  test('all devices', () => {
    assert.deepEqual(buildLsblkArgs(), ['-bia', '--json', '-o', COLUMNS]);
  });
  test('one device, after --', () => {
    assert.deepEqual(buildLsblkArgs('/dev/sda'), ['-bia', '--json', '-o', COLUMNS, '--', '/dev/sda']);
  });
});

describe('parseLsblkJson', () => {
  test('output captured on this project\'s VM (util-linux 2.38, no udev)', () => {
    const rows = parseLsblkJson(fixture('lsblk-vm-virtio.json'));
    const vda = rows.find((r) => r.kname === 'vda');
    assert.deepEqual(vda, {
      kname: 'vda', model: null, size: 274877906944, rota: true, type: 'disk', uuid: null, partuuid: null, serial: null,
      wwn: null, 'log-sec': 512, 'phy-sec': 4096, tran: null, rm: false, ro: false, hctl: null, vendor: '0x1af4',
      label: null, partlabel: null, pkname: null,
    });
    assert.ok(rows.some((r) => r.kname === 'zram0' && r.size === 0));
    assert.ok(rows.filter((r) => r.type === 'loop').length >= 8);
  });

  test('partitions of a loop device carry their parent in pkname', () => {
    const rows = parseLsblkJson(fixture('lsblk-vm-loop-partitions.json'));
    const parts = rows.filter((r) => r.pkname === 'loop1');
    assert.deepEqual(parts.map((r) => [r.kname, r.type, r.size]), [['loop1p1', 'part', 8388608], ['loop1p2', 'part', 57654784]]);
  });

  test('old lsblk (numbers and flags as strings, empty strings)', () => {
    const rows = parseLsblkJson(fixture('lsblk-legacy-strings.json'));
    assert.equal(rows[0]?.size, 2000398934016);
    assert.equal(rows[0]?.rota, true);
    assert.equal(rows[0]?.['phy-sec'], 4096);
    assert.equal(rows[0]?.vendor, 'ATA');
    assert.equal(rows[1]?.uuid, null);
    assert.equal(rows[2]?.ro, true);
  });

  test('tree output is flattened, children inherit pkname, a shared holder appears once per parent', () => {
    const rows = parseLsblkJson(fixture('lsblk-tree-multipath.json'));
    assert.deepEqual(rows.map((r) => [r.kname, r.type, r.pkname]), [
      ['sdc', 'disk', null],
      ['dm-0', 'mpath', 'sdc'],
      ['sdd', 'disk', null],
      ['dm-0', 'mpath', 'sdd'],
      ['sda', 'disk', null],
      ['sda1', 'part', 'sda'],
      ['md0', 'raid1', 'sda1'],
    ]);
  });

  test('unknown columns are ignored', () => {
    const rows = parseLsblkJson('{"blockdevices":[{"kname":"sda","size":1,"type":"disk","fstype":"xfs","new-col":[1]}]}');
    assert.equal(rows[0]?.kname, 'sda');
    assert.equal(rows[0]?.model, null);
  });

  const BAD: [string, string][] = [
    ['not JSON', 'lsblk: unknown column'],
    ['no blockdevices list', '{"devices":[]}'],
    ['size is not a number', '{"blockdevices":[{"kname":"sda","size":"12 GB"}]}'],
    ['flag is not a boolean', '{"blockdevices":[{"kname":"sda","rota":"maybe"}]}'],
    ['row without kname', '{"blockdevices":[{"size":1}]}'],
  ];
  for (const [title, text] of BAD) {
    test(`BLOCK_DEVICE_ERROR: ${title}`, () => {
      assert.throws(() => parseLsblkJson(text), { code: 'BLOCK_DEVICE_ERROR' });
    });
  }
});

describe('runLsblk', () => {
  test('runs lsblk with the column list and parses its output', async () => {
    const runner = createFakeRunner([{ argv: ['lsblk', ...buildLsblkArgs('/dev/sda')], stdout: fixture('lsblk-legacy-strings.json') }]);
    const rows = await runLsblk(runner, { device: '/dev/sda' });
    assert.equal(rows.length, 3);
    runner.assertDone();
  });

  test('a failing lsblk becomes BLOCK_DEVICE_ERROR with the command details', async () => {
    const runner = createFakeRunner([{ argv: (a) => a[0] === 'lsblk', exitCode: 32, stderr: 'lsblk: /dev/sdx: not a block device' }]);
    await assert.rejects(runLsblk(runner), (err: unknown) => {
      assert.ok(isAgentError(err));
      assert.equal(err.code, 'BLOCK_DEVICE_ERROR');
      assert.match(err.message, /not a block device/);
      assert.equal(err.details['exit_code'], 32);
      return true;
    });
  });

  test('cancellation is passed through unchanged', async () => {
    const cancelled = new CommandFailedError('CANCELLED', ['lsblk'], undefined, '');
    const runner = createFakeRunner([{ argv: (a) => a[0] === 'lsblk', error: cancelled }]);
    await assert.rejects(runLsblk(runner), (err) => err === cancelled);
  });
});
