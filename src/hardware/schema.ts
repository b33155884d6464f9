/**
 * The hardware inventory exactly as ironic-python-agent serializes it (`hardware.py`
 * `list_hardware_info`). Strict: it describes our own output, so a stray field is a bug.
 * @module
 */
import { z } from 'zod';
import { BlockDevice } from '../disk/index.ts';

export const InventoryInterface = z.strictObject({
  name: z.string().min(1),
  mac_address: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/, 'lower-case colon-separated MAC'),
  ipv4_address: z.string().nullable(),
  ipv6_address: z.string().nullable(),
  has_carrier: z.boolean(),
  // IPA sends [[tlv_type, hex_value], …] when it collects LLDP; this agent does not.
  lldp: z.array(z.tuple([z.number().int(), z.string()])).nullable(),
  vendor: z.string().nullable(),
  product: z.string().nullable(),
  client_id: z.string().nullable(),
  biosdevname: z.string().nullable(),
  speed_mbps: z.number().int().nonnegative().nullable(),
  pci_address: z.string().nullable(),
  driver: z.string().nullable(),
});
export type InventoryInterface = z.infer<typeof InventoryInterface>;

export const InventoryCpu = z.strictObject({
  model_name: z.string().nullable(),
  // MHz as lscpu prints it ("2800.0000"), which is what IPA forwards.
  frequency: z.string().nullable(),
  count: z.number().int().positive(),
  architecture: z.string().min(1),
  flags: z.array(z.string()),
  socket_count: z.number().int().positive().nullable(),
});
export type InventoryCpu = z.infer<typeof InventoryCpu>;

// IPA's disk: the agent's BlockDevice without the fields only the agent uses.
export const InventoryDisk = z.strictObject(BlockDevice.omit({ removable: true, read_only: true, type: true }).shape);
export type InventoryDisk = z.infer<typeof InventoryDisk>;

export const InventoryMemory = z.strictObject({
  total: z.number().int().positive(),
  physical_mb: z.number().int().positive().nullable(),
});

export const InventorySystemVendor = z.strictObject({
  product_name: z.string(),
  serial_number: z.string(),
  manufacturer: z.string(),
  firmware: z.strictObject({ vendor: z.string(), version: z.string(), build_date: z.string() }),
});

export const InventoryBoot = z.strictObject({
  current_boot_mode: z.enum(['uefi', 'bios']),
  // The raw BOOTIF kernel value (e.g. "01-52-54-00-12-34-56"), not a MAC.
  pxe_interface: z.string().nullable(),
});

export const Inventory = z.strictObject({
  interfaces: z.array(InventoryInterface),
  cpu: InventoryCpu,
  disks: z.array(InventoryDisk),
  memory: InventoryMemory,
  bmc_address: z.string().nullable(),
  bmc_v6address: z.string().nullable(),
  system_vendor: InventorySystemVendor,
  boot: InventoryBoot,
  hostname: z.string(),
});
export type Inventory = z.infer<typeof Inventory>;
