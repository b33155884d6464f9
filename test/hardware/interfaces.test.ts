import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isVlanName, listNetworkInterfaces, pciAddressFromPath } from '../../src/hardware/index.ts';
import { createFakeTree, type FakeTree } from '../helpers/fake-tree.ts';
import { SYSFS } from './fake-machine.ts';

describe('listNetworkInterfaces (fake sysfs)', () => {
  let tree: FakeTree;
  before(async () => {
    tree = await createFakeTree(SYSFS, 'hw-interfaces-');
  });
  after(async () => {
    await tree.cleanup();
  });

  test('device-backed interfaces and VLANs, in name order, with IPA fields', async () => {
    const addresses = new Map([
      ['eth0', { ip4: '192.0.2.2', ip6: 'fd00::2' }],
      ['eno1.100', { ip4: null, ip6: 'fe80::1' }],
    ]);
    const interfaces = await listNetworkInterfaces({ sysRoot: tree.root, addresses });
    assert.deepEqual(interfaces, [
      {
        name: 'eno1', mac_address: 'b4:96:91:aa:bb:cc', ipv4_address: null, ipv6_address: null, has_carrier: true,
        lldp: null, vendor: '0x8086', product: '0x159b', client_id: null, biosdevname: null, speed_mbps: 25000,
        pci_address: '0000:3b:00.0', driver: 'ice',
      },
      {
        name: 'eno1.100', mac_address: 'b4:96:91:aa:bb:cc', ipv4_address: null, ipv6_address: 'fe80::1', has_carrier: true,
        lldp: null, vendor: null, product: null, client_id: null, biosdevname: null, speed_mbps: null,
        pci_address: null, driver: null,
      },
      {
        name: 'eth0', mac_address: '02:fc:00:00:00:01', ipv4_address: '192.0.2.2', ipv6_address: 'fd00::2', has_carrier: true,
        lldp: null, vendor: '0x1af4', product: '0x0001', client_id: null, biosdevname: null, speed_mbps: null,
        pci_address: '0000:00:03.0', driver: 'virtio_net',
      },
    ]);
  });
});

describe('interface helpers', () => {
  test('isVlanName', () => {
    assert.equal(isVlanName('eno1.100'), true);
    assert.equal(isVlanName('eno1'), false);
    assert.equal(isVlanName('.100'), false);
    assert.equal(isVlanName('bond0.vlan'), false);
  });
  test('pciAddressFromPath takes the nearest PCI address', () => {
    assert.equal(pciAddressFromPath('/sys/devices/pci0000:00/0000:00:03.0/virtio2'), '0000:00:03.0');
    assert.equal(pciAddressFromPath('/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1'), '0000:3b:00.1');
    assert.equal(pciAddressFromPath('/sys/devices/platform/soc/1c30000.ethernet'), null);
    assert.equal(pciAddressFromPath(null), null);
  });
});
