/**
 * The hardware inventory IPA sends for inspection (`list_hardware_info`): interfaces, CPU,
 * disks, memory, BMC addresses, system vendor, boot mode and hostname.
 * @module
 */
import { hostname as osHostname, machine } from 'node:os';
import { join } from 'node:path';
import { listBlockDevices, type BlockDevice } from '../disk/index.ts';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { getBmcAddresses } from './bmc.ts';
import { listNetworkInterfaces } from './interfaces.ts';
import { Inventory, type InventoryCpu, type InventoryDisk } from './schema.ts';
import { pathExists, readTrimmed } from './sysfs.ts';

/** The systeminformation calls the inventory uses (tests pass a fake). */
export interface SystemInfoSource {
  networkInterfaces(): Promise<readonly { iface: string; ip4: string; ip6: string }[]>;
  cpu(): Promise<{ manufacturer: string; brand: string; speed: number; speedMax: number; cores: number; processors: number }>;
  cpuFlags(): Promise<string>;
  mem(): Promise<{ total: number }>;
  memLayout(): Promise<readonly { size: number; type: string; bank: string }[]>;
  system(): Promise<{ manufacturer: string; model: string; serial: string }>;
  bios(): Promise<{ vendor: string; version: string; releaseDate: string }>;
}

export interface CollectInventoryOptions {
  runner: CommandRunner;
  signal?: AbortSignal;
  log?: Logger;
  /** The raw `BOOTIF` kernel parameter, reported as `boot.pxe_interface`. */
  bootif?: string | null;
  includeLoop?: boolean;
  /** Lookup's `agent_skip_bmc_detect`: report null BMC addresses without running ipmitool. */
  skipBmcDetect?: boolean;
  sysRoot?: string;
  procRoot?: string;
  byPathDir?: string;
  systemInfo?: SystemInfoSource;
  hostname?: () => string;
}

// systeminformation is loaded on the first inventory, not when the agent starts: its module
// code costs CPU and heap, and most boots never need it before deploy. Only the four modules
// the inventory calls are imported (the package's index would also pull in docker, wifi,
// graphics, processes, …: 60 % of its code, parsed by every start of the bundle).
let systemInformation: Promise<SystemInfoSource> | undefined;
const loadSystemInformation = (): Promise<SystemInfoSource> => (systemInformation ??= Promise.all([
  import('systeminformation/lib/network.js'), import('systeminformation/lib/cpu.js'),
  import('systeminformation/lib/memory.js'), import('systeminformation/lib/system.js'),
]).then(([network, cpu, memory, system]) => ({
  networkInterfaces: network.networkInterfaces, cpu: cpu.cpu, cpuFlags: cpu.cpuFlags,
  mem: memory.mem, memLayout: memory.memLayout, system: system.system, bios: system.bios,
})));
const defaultSystemInfo: SystemInfoSource = {
  networkInterfaces: async () => (await loadSystemInformation()).networkInterfaces(),
  cpu: async () => (await loadSystemInformation()).cpu(),
  cpuFlags: async () => (await loadSystemInformation()).cpuFlags(),
  mem: async () => (await loadSystemInformation()).mem(),
  memLayout: async () => (await loadSystemInformation()).memLayout(),
  system: async () => (await loadSystemInformation()).system(),
  bios: async () => (await loadSystemInformation()).bios(),
};

const MIB = 2 ** 20;
// systeminformation fills in these when the firmware says nothing (no DMI in most VMs).
const SI_PLACEHOLDERS = new Set(['-', 'Computer', 'Virtual machine', 'Docker Container']);

function clean(value: string | undefined): string {
  const v = (value ?? '').trim();
  return SI_PLACEHOLDERS.has(v) ? '' : v;
}

// IPA's BlockDevice serializes exactly these fields.
export function toInventoryDisk(d: BlockDevice): InventoryDisk {
  return {
    name: d.name, model: d.model, size: d.size, rotational: d.rotational, wwn: d.wwn, serial: d.serial,
    vendor: d.vendor, wwn_with_extension: d.wwn_with_extension, wwn_vendor_extension: d.wwn_vendor_extension,
    hctl: d.hctl, by_path: d.by_path, logical_sectors: d.logical_sectors, physical_sectors: d.physical_sectors, tran: d.tran,
  };
}

/**
 * Installed memory in MiB from the DIMM table; without one (VMs without DMI) the kernel's
 * total rounded up to 128 MiB, since the kernel keeps some memory for itself.
 */
export function physicalMemoryMb(layout: readonly { size: number; type: string; bank: string }[], totalBytes: number): number {
  // systeminformation reports one untyped, bank-less entry of os.totalmem() when dmidecode
  // found nothing; that is not a DIMM.
  const dimms = layout.filter((m) => m.size > 0 && m.type !== '' && m.type !== 'Empty');
  const bytes = dimms.reduce((sum, m) => sum + m.size, 0);
  if (bytes > 0) return Math.round(bytes / MIB);
  return Math.ceil(totalBytes / (128 * MIB)) * 128;
}

// lscpu's "Model name" comes from /proc/cpuinfo on x86; systeminformation rewrites it.
async function cpuModelName(procRoot: string): Promise<string | null> {
  const cpuinfo = await readTrimmed(join(procRoot, 'cpuinfo'));
  const m = cpuinfo ? /^model name\s*:\s*(.+)$/m.exec(cpuinfo) : null;
  return m?.[1]?.trim() || null;
}

async function collectCpu(systemInfo: SystemInfoSource, procRoot: string): Promise<InventoryCpu> {
  const [cpu, flags, modelName] = await Promise.all([systemInfo.cpu(), systemInfo.cpuFlags(), cpuModelName(procRoot)]);
  const ghz = cpu.speedMax || cpu.speed;
  return {
    model_name: modelName ?? (`${cpu.manufacturer} ${cpu.brand}`.trim() || null),
    frequency: ghz > 0 ? (ghz * 1000).toFixed(4) : null,
    count: cpu.cores,
    architecture: machine(),
    flags: flags.split(/\s+/).filter(Boolean),
    socket_count: cpu.processors > 0 ? cpu.processors : null,
  };
}

/** Collect the inventory; everything runs in parallel and the result is checked against `Inventory`. */
export async function collectInventory(options: CollectInventoryOptions): Promise<Inventory> {
  const started = performance.now();
  const systemInfo = options.systemInfo ?? defaultSystemInfo;
  const sysRoot = options.sysRoot ?? '/sys';
  const log = options.log;
  try {
    const [nics, cpu, mem, layout, system, bios, disks, bmc, uefi] = await Promise.all([
      systemInfo.networkInterfaces(),
      collectCpu(systemInfo, options.procRoot ?? '/proc'),
      systemInfo.mem(),
      systemInfo.memLayout(),
      systemInfo.system(),
      systemInfo.bios(),
      listBlockDevices({ runner: options.runner, signal: options.signal, log, includeLoop: options.includeLoop, sysRoot, byPathDir: options.byPathDir }),
      options.skipBmcDetect ? { v4: null, v6: null } : getBmcAddresses({ runner: options.runner, signal: options.signal, log }),
      pathExists(join(sysRoot, 'firmware', 'efi')),
    ]);
    options.signal?.throwIfAborted();
    const addresses = new Map(nics.map((n) => [n.iface, { ip4: n.ip4 || null, ip6: n.ip6 || null }]));
    const inventory = {
      interfaces: await listNetworkInterfaces({ sysRoot, addresses, log }),
      cpu,
      disks: disks.map(toInventoryDisk),
      memory: { total: mem.total, physical_mb: physicalMemoryMb(layout, mem.total) },
      bmc_address: bmc.v4,
      bmc_v6address: bmc.v6,
      system_vendor: {
        product_name: clean(system.model),
        serial_number: clean(system.serial),
        manufacturer: clean(system.manufacturer),
        firmware: { vendor: clean(bios.vendor), version: clean(bios.version), build_date: clean(bios.releaseDate) },
      },
      boot: { current_boot_mode: uefi ? 'uefi' : 'bios', pxe_interface: options.bootif ?? null },
      hostname: (options.hostname ?? osHostname)(),
    };
    const checked = Inventory.safeParse(inventory);
    if (!checked.success) {
      throw new AgentError('INVENTORY_FAILED', `The collected inventory is malformed: ${checked.error.message}`, {
        cause: checked.error,
        details: { issues: checked.error.issues },
      });
    }
    log?.debug({ duration_ms: Math.round(performance.now() - started), disks: disks.length, interfaces: inventory.interfaces.length }, 'inventory collected');
    return checked.data;
  } catch (err) {
    if (isAgentError(err) && (err.code === 'INVENTORY_FAILED' || err.code === 'CANCELLED')) throw err;
    if (options.signal?.aborted) throw new AgentError('CANCELLED', 'Inventory collection was cancelled', { cause: err });
    const message = err instanceof Error ? err.message : String(err);
    throw new AgentError('INVENTORY_FAILED', `Collecting the hardware inventory failed: ${message}`, {
      cause: err,
      details: isAgentError(err) ? { code: err.code, ...err.details } : {},
    });
  }
}
