/**
 * Network interfaces as IPA reports them (`list_network_interfaces`, `get_interface_info`):
 * every interface under /sys/class/net backed by a device (or named like a VLAN), with its
 * MAC, first addresses, carrier, PCI identity and driver.
 * @module
 */
import { readdir } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { Logger } from '../log/index.ts';
import type { InventoryInterface } from './schema.ts';
import { linkBasename, pathExists, readTrimmed, resolvedPath } from './sysfs.ts';

/** Addresses per interface name, from systeminformation's `networkInterfaces()`. */
export type InterfaceAddresses = ReadonlyMap<string, { ip4: string | null; ip6: string | null }>;

export interface ListNetworkInterfacesOptions {
  sysRoot?: string;
  addresses?: InterfaceAddresses;
  log?: Logger;
}

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$/i;

// IPA: a VLAN interface has no /device, so it is recognised by its `<parent>.<id>` name.
export function isVlanName(name: string): boolean {
  const dot = name.indexOf('.');
  return dot > 0 && /^\d+$/.test(name.slice(dot + 1));
}

// The device link of a virtio NIC points at `…/0000:00:03.0/virtio2`: the PCI address is
// the nearest path component that looks like one.
export function pciAddressFromPath(path: string | null): string | null {
  if (!path) return null;
  const parts = path.split(sep).reverse();
  return parts.find((p) => PCI_ADDRESS.test(p)) ?? null;
}

function parseSpeed(value: string | null): number | null {
  if (value === null || !/^\d+$/.test(value)) return null; // -1 or EINVAL when the link is down
  return Number(value);
}

async function describeInterface(sysRoot: string, name: string, addresses: InterfaceAddresses): Promise<InventoryInterface | null> {
  const base = join(sysRoot, 'class', 'net', name);
  const mac = (await readTrimmed(join(base, 'address')))?.toLowerCase() ?? null;
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2})+$/.test(mac)) return null;
  const [carrier, vendor, product, speed, driver, devicePath] = await Promise.all([
    readTrimmed(join(base, 'carrier')),
    readTrimmed(join(base, 'device', 'vendor')),
    readTrimmed(join(base, 'device', 'device')),
    readTrimmed(join(base, 'speed')),
    linkBasename(join(base, 'device', 'driver')),
    resolvedPath(join(base, 'device')),
  ]);
  const addr = addresses.get(name);
  return {
    name,
    mac_address: mac,
    ipv4_address: addr?.ip4 ?? null,
    ipv6_address: addr?.ip6 ?? null,
    has_carrier: carrier === '1',
    lldp: null,
    vendor,
    product,
    client_id: null,
    biosdevname: null,
    speed_mbps: parseSpeed(speed),
    pci_address: pciAddressFromPath(devicePath),
    driver,
  };
}

/** The interfaces IPA would report, sorted by name; `lo` and other virtual devices are left out. */
export async function listNetworkInterfaces(options: ListNetworkInterfacesOptions = {}): Promise<InventoryInterface[]> {
  const sysRoot = options.sysRoot ?? '/sys';
  const addresses = options.addresses ?? new Map();
  const names = (await readdir(join(sysRoot, 'class', 'net'))).sort();
  const kept = await Promise.all(
    names.map(async (name) => name !== 'lo' && (isVlanName(name) || (await pathExists(join(sysRoot, 'class', 'net', name, 'device'))))),
  );
  const found = await Promise.all(names.filter((_, i) => kept[i]).map((name) => describeInterface(sysRoot, name, addresses)));
  const interfaces = found.filter((i): i is InventoryInterface => i !== null);
  options.log?.debug({ interfaces: interfaces.map((i) => i.name), skipped: names.filter((_, i) => !kept[i]) }, 'network interfaces listed');
  return interfaces;
}
