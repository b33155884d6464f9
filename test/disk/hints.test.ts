import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  findDevicesByHints,
  guessRootDisk,
  pyQuote,
  rootDeviceSelectionFromNode,
  selectRootDevice,
  type BlockDevice,
} from '../../src/disk/index.ts';
import { isAgentError } from '../../src/errors.ts';

const GIB = 2 ** 30;

function disk(name: string, fields: Partial<BlockDevice>): BlockDevice {
  return {
    name, model: null, size: 0, rotational: false, wwn: null, serial: null, vendor: null, wwn_with_extension: null,
    wwn_vendor_extension: null, hctl: null, by_path: null, logical_sectors: 512, physical_sectors: 512, tran: null,
    removable: false, read_only: false, type: 'disk', ...fields,
  };
}

// Listing order matters: with hints the first match wins.
const DEVICES: BlockDevice[] = [
  disk('/dev/sda', {
    model: 'Samsung SSD 860 EVO 500GB', size: 500107862016, vendor: 'ATA', serial: 'S3Z9NB0K123456A',
    wwn: '0x5002538e40a1b2c3', wwn_with_extension: '0x5002538e40a1b2c3', hctl: '0:0:0:0', tran: 'sata',
    by_path: '/dev/disk/by-path/pci-0000:00:17.0-ata-1',
  }),
  disk('/dev/sdb', {
    model: 'LOGICAL VOLUME', size: 10 * GIB, vendor: 'HP', rotational: true, serial: 'PDNLH0BRH8Y1AB',
    wwn: '0x600508b1001c4b71', wwn_with_extension: '0x600508b1001c4b712b3a4b9c7e8e5cd5',
    wwn_vendor_extension: '0x2b3a4b9c7e8e5cd5', hctl: '1:1:0:0', tran: 'sas',
  }),
  disk('/dev/nvme0n1', {
    model: 'Samsung SSD 970 EVO Plus 1TB', size: 20 * GIB - 512, tran: 'nvme',
    serial: ['S4EWNX0N123456B', 'S4EWNX0N123456B-alt'], wwn: ['eui.0025388b71b0c4d2', 'eui.alt'],
  }),
  disk('/dev/sdc', { model: 'Ultra Fit', size: 2 * GIB, vendor: 'SanDisk', removable: true, tran: 'usb', serial: '12345' }),
];

type Case = [title: string, hints: Record<string, unknown> | null, expected: string];

// expected: a device name, or an error code.
const CASES: Case[] = [
  ['no hints: smallest disk of at least 4 GiB', null, '/dev/sdb'],
  ['empty hints are no hints', {}, '/dev/sdb'],
  // size: integer GiB against the device size as a float
  ['size default operator is ==', { size: 10 }, '/dev/sdb'],
  ['size as a string', { size: '10' }, '/dev/sdb'],
  ['size compares a float: 20 GiB minus a sector is not 20', { size: 20 }, 'DEVICE_NOT_FOUND'],
  ['size ==', { size: '== 10' }, '/dev/sdb'],
  ['size = means at least', { size: '= 19' }, '/dev/sda'],
  ['size >=', { size: '>= 20' }, '/dev/sda'],
  ['size > excludes equal', { size: '> 10' }, '/dev/sda'],
  ['size <', { size: '< 10' }, '/dev/sdc'],
  ['size <=', { size: '<= 10' }, '/dev/sdb'],
  ['size !=', { size: '!= 465' }, '/dev/sda'],
  ['size operator without a space', { size: '<=10' }, '/dev/sdb'],
  ['size <or>', { size: '<or> 2 <or> 10' }, '/dev/sdb'],
  ['size <range-in> inclusive lower bound', { size: '<range-in> [10 20)' }, '/dev/sdb'],
  ['size <range-in> exclusive lower bound', { size: '<range-in> (10 20)' }, '/dev/nvme0n1'],
  ['size <range-in> exclusive upper bound', { size: '<range-in> (2 10)' }, 'DEVICE_NOT_FOUND'],
  ['size <range-in> inclusive upper bound, oslo spacing', { size: '<range-in> ( 2 10 ]' }, '/dev/sdb'],
  ['size <range-in> single point', { size: '<range-in> [2 2]' }, '/dev/sdc'],
  ['size not an integer', { size: 'abc' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size not positive', { size: 0 }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size negative', { size: '-1' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size fractional', { size: 10.5 }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size boolean', { size: true }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size with a string operator', { size: 's== 10' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size with <in>', { size: '<in> 10' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size <range-in> reversed bounds', { size: '<range-in> [20 10]' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size <range-in> without brackets', { size: '<range-in> 10 20' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['size operator without a value', { size: '>=' }, 'INVALID_ROOT_DEVICE_HINTS'],
  // strings: default s==, lower-cased and URL-quoted on both sides
  ['model exact', { model: 'Samsung SSD 860 EVO 500GB' }, '/dev/sda'],
  ['model case-insensitive', { model: 'samsung ssd 860 evo 500gb' }, '/dev/sda'],
  ['model surrounding spaces ignored', { model: '  Ultra Fit ' }, '/dev/sdc'],
  ['model s==', { model: 's== ultra fit' }, '/dev/sdc'],
  ['model s!=', { model: 's!= samsung ssd 860 evo 500gb' }, '/dev/sdb'],
  ['model <in> substring, first in listing order', { model: '<in> samsung' }, '/dev/sda'],
  ['model <in>', { model: '<in> 970' }, '/dev/nvme0n1'],
  ['model <or>', { model: '<or> ultra fit <or> logical volume' }, '/dev/sdb'],
  ['model <all-in> (every word is in the value)', { model: '<all-in> samsung 970' }, '/dev/nvme0n1'],
  ['model "none" does not match a device without a model', { model: 'none' }, 'DEVICE_NOT_FOUND'],
  ['vendor s>', { vendor: 's> hp' }, '/dev/sdc'],
  ['vendor s>=', { vendor: 's>= hp' }, '/dev/sdb'],
  ['vendor s<', { vendor: 's< b' }, '/dev/sda'],
  ['vendor s<=', { vendor: 's<= ata' }, '/dev/sda'],
  ['hctl with colons (quoted to %3A on both sides)', { hctl: '1:1:0:0' }, '/dev/sdb'],
  ['by_path', { by_path: '/dev/disk/by-path/pci-0000:00:17.0-ata-1' }, '/dev/sda'],
  ['tran', { tran: 'NVMe' }, '/dev/nvme0n1'],
  ['wwn', { wwn: '0x600508b1001c4b71' }, '/dev/sdb'],
  ['wwn_with_extension', { wwn_with_extension: '0x600508b1001c4b712b3a4b9c7e8e5cd5' }, '/dev/sdb'],
  ['wwn_vendor_extension', { wwn_vendor_extension: '0x2b3a4b9c7e8e5cd5' }, '/dev/sdb'],
  ['list-valued serial: any element matches', { serial: 'S4EWNX0N123456B-alt' }, '/dev/nvme0n1'],
  ['list-valued wwn: any element matches', { wwn: 'eui.alt' }, '/dev/nvme0n1'],
  ['list-valued serial with <all-in>', { serial: '<all-in> s4ewnx0n123456b s4ewnx0n123456b-alt' }, '/dev/nvme0n1'],
  ['numeric operator on a string hint compares numbers', { serial: '>= 12000' }, '/dev/sdc'],
  ['numeric operator with a non-numeric value', { hctl: '== abc' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['string hint given as a number', { serial: 12345 }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['empty string hint', { model: '   ' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['<range-in> on a string hint', { model: '<range-in> [1 2]' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['<or> with an empty alternative', { model: '<or> a <or>' }, 'INVALID_ROOT_DEVICE_HINTS'],
  // name: with or without /dev/
  ['name with /dev/', { name: '/dev/sdb' }, '/dev/sdb'],
  ['name without /dev/', { name: 'sdb' }, '/dev/sdb'],
  ['name <or> mixing both spellings', { name: '<or> sdc <or> /dev/sdb' }, '/dev/sdb'],
  ['name <in> is a plain substring', { name: '<in> nvme' }, '/dev/nvme0n1'],
  // rotational: strict boolean
  ['rotational true', { rotational: true }, '/dev/sdb'],
  ['rotational "true"', { rotational: 'true' }, '/dev/sdb'],
  ['rotational "1"', { rotational: '1' }, '/dev/sdb'],
  ['rotational "yes"', { rotational: 'yes' }, '/dev/sdb'],
  ['rotational false', { rotational: false }, '/dev/sda'],
  ['rotational "no"', { rotational: 'no' }, '/dev/sda'],
  ['rotational 0', { rotational: 0 }, '/dev/sda'],
  ['rotational "maybe"', { rotational: 'maybe' }, 'INVALID_ROOT_DEVICE_HINTS'],
  ['rotational 2', { rotational: 2 }, 'INVALID_ROOT_DEVICE_HINTS'],
  // several hints: all must match
  ['all hints must match', { rotational: false, size: '>= 10' }, '/dev/sda'],
  ['all hints must match (second device)', { model: '<in> samsung', size: '< 100' }, '/dev/nvme0n1'],
  ['unknown hint', { color: 'red' }, 'INVALID_ROOT_DEVICE_HINTS'],
];

function outcome(hints: Record<string, unknown> | null): string {
  try {
    return selectRootDevice(DEVICES, { root_device: hints }).name;
  } catch (err) {
    if (isAgentError(err)) return err.code;
    throw err;
  }
}

describe('selectRootDevice: hint table', () => {
  for (const [title, hints, expected] of CASES) {
    test(`${title}: ${JSON.stringify(hints)} → ${expected}`, () => {
      assert.equal(outcome(hints), expected);
    });
  }
});

describe('selectRootDevice: messages and skip list', () => {
  test('DEVICE_NOT_FOUND names the hints', () => {
    assert.throws(() => selectRootDevice(DEVICES, { root_device: { model: 'nope', size: 10 } }), (err: unknown) => {
      assert.ok(isAgentError(err));
      assert.equal(err.code, 'DEVICE_NOT_FOUND');
      assert.equal(err.message, 'No suitable device was found for deployment using these hints {"model":"nope","size":10}');
      assert.deepEqual(err.details['devices'], DEVICES.map((d) => d.name));
      return true;
    });
  });

  test('an unknown hint is named with the valid ones', () => {
    assert.throws(() => selectRootDevice(DEVICES, { root_device: { color: 'red', size: 10 } }), {
      code: 'INVALID_ROOT_DEVICE_HINTS',
      message: /^The hints "color" are invalid\. Valid hints are: "size, model, wwn, serial, vendor, /,
    });
  });

  test('hints must be a dictionary', () => {
    assert.throws(() => selectRootDevice(DEVICES, { root_device: 'sda' }), { code: 'INVALID_ROOT_DEVICE_HINTS' });
  });

  test('skip_block_devices are excluded before matching', () => {
    const device = selectRootDevice(DEVICES, { root_device: { model: '<in> samsung' }, skip_block_devices: [{ name: '/dev/sda' }] });
    assert.equal(device.name, '/dev/nvme0n1');
  });

  test('skip_block_devices also apply without hints', () => {
    assert.equal(selectRootDevice(DEVICES, { skip_block_devices: [{ size: 10 }] }).name, '/dev/nvme0n1');
  });

  test('one skip entry may exclude several devices; RAID volume_name entries are ignored', () => {
    const device = selectRootDevice(DEVICES, { skip_block_devices: [{ rotational: true }, { model: '<in> 970' }, { volume_name: 'root' }] });
    assert.equal(device.name, '/dev/sda');
  });

  test('skipping every candidate is DEVICE_NOT_FOUND', () => {
    assert.throws(() => selectRootDevice(DEVICES, { root_device: { tran: 'sas' }, skip_block_devices: [{ tran: 'sas' }] }), {
      code: 'DEVICE_NOT_FOUND',
    });
  });

  test('malformed skip lists are INVALID_ROOT_DEVICE_HINTS', () => {
    assert.throws(() => selectRootDevice(DEVICES, { skip_block_devices: { name: 'sda' } }), { code: 'INVALID_ROOT_DEVICE_HINTS' });
    assert.throws(() => selectRootDevice(DEVICES, { skip_block_devices: [{ colour: 'red' }] }), {
      code: 'INVALID_ROOT_DEVICE_HINTS',
      message: /skip_block_devices entry \{"colour":"red"\}/,
    });
  });
});

describe('guessRootDisk', () => {
  test('ties on size are broken by name', () => {
    const devices = [disk('/dev/sdz', { size: 8 * GIB }), disk('/dev/sdb', { size: 8 * GIB }), disk('/dev/sda', { size: 9 * GIB })];
    assert.equal(guessRootDisk(devices).name, '/dev/sdb');
  });

  test('4 GiB exactly is enough', () => {
    assert.equal(guessRootDisk([disk('/dev/vda', { size: 4 * GIB }), disk('/dev/vdb', { size: 8 * GIB })]).name, '/dev/vda');
  });

  test('nothing of at least 4 GiB', () => {
    assert.throws(() => guessRootDisk([disk('/dev/vda', { size: 4 * GIB - 1 })]), {
      code: 'DEVICE_NOT_FOUND',
      message: 'No suitable device was found for deployment - root device hints were not provided and all found block devices are smaller than 4294967296B.',
    });
    assert.throws(() => guessRootDisk([]), { code: 'DEVICE_NOT_FOUND' });
  });
});

describe('helpers', () => {
  test('pyQuote behaves like urllib.parse.quote', () => {
    assert.equal(pyQuote('samsung ssd/x:y'), 'samsung%20ssd/x%3Ay');
    assert.equal(pyQuote("a!b*c'(d)~e_f.g-h"), 'a%21b%2Ac%27%28d%29~e_f.g-h');
    assert.equal(pyQuote('ü'), '%C3%BC');
  });

  test('findDevicesByHints returns every match in order', () => {
    assert.deepEqual(findDevicesByHints(DEVICES, { rotational: false }).map((d) => d.name), ['/dev/sda', '/dev/nvme0n1', '/dev/sdc']);
  });

  test('rootDeviceSelectionFromNode prefers instance_info, skip list from properties', () => {
    const node = {
      instance_info: { root_device: { name: 'sdb' } },
      properties: { root_device: { name: 'sda' }, skip_block_devices: [{ name: 'sdc' }] },
    };
    assert.deepEqual(rootDeviceSelectionFromNode(node), { root_device: { name: 'sdb' }, skip_block_devices: [{ name: 'sdc' }] });
    assert.deepEqual(rootDeviceSelectionFromNode({ instance_info: { root_device: {} }, properties: { root_device: { size: 10 } } }), {
      root_device: { size: 10 },
      skip_block_devices: undefined,
    });
    assert.deepEqual(rootDeviceSelectionFromNode(undefined), { root_device: undefined, skip_block_devices: undefined });
  });
});
