/**
 * A small fake server for inventory tests: sysfs with a virtio NIC, an Intel NIC with a VLAN,
 * a bridge and loopback; procfs cpuinfo; and a systeminformation stand-in.
 */
import type { SystemInfoSource } from '../../src/hardware/index.ts';
import type { FakeTreeEntry } from '../helpers/fake-tree.ts';

const VIRTIO = 'devices/pci0000:00/0000:00:03.0/virtio2';
const ICE = 'devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0';

export const SYSFS: Record<string, FakeTreeEntry> = {
  [`${VIRTIO}/vendor`]: '0x1af4\n',
  [`${VIRTIO}/device`]: '0x0001\n',
  [`${VIRTIO}/driver`]: { symlink: '../../../../bus/virtio/drivers/virtio_net' },
  'bus/virtio/drivers/virtio_net': { dir: true },
  'class/net/eth0/address': '02:FC:00:00:00:01\n',
  'class/net/eth0/carrier': '1\n',
  'class/net/eth0/speed': '-1\n',
  'class/net/eth0/device': { symlink: `../../../${VIRTIO}` },
  [`${ICE}/vendor`]: '0x8086\n',
  [`${ICE}/device`]: '0x159b\n',
  [`${ICE}/driver`]: { symlink: '../../../../bus/pci/drivers/ice' },
  'bus/pci/drivers/ice': { dir: true },
  'class/net/eno1/address': 'b4:96:91:aa:bb:cc\n',
  'class/net/eno1/carrier': '1\n',
  'class/net/eno1/speed': '25000\n',
  'class/net/eno1/device': { symlink: `../../../${ICE}` },
  'class/net/eno1.100/address': 'b4:96:91:aa:bb:cc\n',
  'class/net/eno1.100/carrier': '1\n',
  'class/net/eno2/device': { symlink: `../../../${ICE}` },
  'class/net/br0/address': '9a:00:00:00:00:01\n',
  'class/net/lo/address': '00:00:00:00:00:00\n',
  'block/sda/device/vendor': 'ATA     \n',
};

export const PROCFS: Record<string, FakeTreeEntry> = {
  cpuinfo: 'processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nflags\t\t: fpu vme\n\nprocessor\t: 1\n',
};

export function fakeSystemInfo(overrides: Partial<SystemInfoSource> = {}): SystemInfoSource {
  return {
    networkInterfaces: async () => [
      { iface: 'lo', ip4: '127.0.0.1', ip6: '::1' },
      { iface: 'eth0', ip4: '192.0.2.2', ip6: 'fd00::2' },
      { iface: 'eno1.100', ip4: '', ip6: 'fe80::b696:91ff:feaa:bbcc' },
    ],
    cpu: async () => ({ manufacturer: 'Intel', brand: 'Xeon® Gold 6338', speed: 2, speedMax: 3.2, cores: 128, processors: 2 }),
    cpuFlags: async () => 'fpu vme de pse tsc',
    mem: async () => ({ total: 270_000_000_000 }),
    memLayout: async () => [
      { size: 128 * 2 ** 30, type: 'DDR4', bank: 'P0_Node0_Channel0_Dimm0' },
      { size: 0, type: 'Empty', bank: 'P0_Node0_Channel0_Dimm1' },
      { size: 128 * 2 ** 30, type: 'DDR4', bank: 'P1_Node1_Channel0_Dimm0' },
    ],
    system: async () => ({ manufacturer: 'Supermicro', model: 'SYS-120U-TNR', serial: 'S123456X1' }),
    bios: async () => ({ vendor: 'American Megatrends International, LLC.', version: '1.4', releaseDate: '2022-08-26' }),
    ...overrides,
  };
}
