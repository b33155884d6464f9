/**
 * Hardware inventory in IPA's shape, and the `system.get_inventory` command.
 * @example
 * const inventory = await collectInventory({
 *   runner, signal, log,
 *   bootif: config.bootif,
 *   includeLoop: config.include_loop_devices,
 * });
 * inventory.interfaces.map((i) => i.mac_address); // the MACs lookup sends
 * @module
 */
export { getBmcAddresses, parseIpmiLan6Print, parseIpmiLanPrint } from './bmc.ts';
export type { BmcAddresses, GetBmcAddressesOptions } from './bmc.ts';
export { createHardwareCommands } from './commands.ts';
export type { HardwareCommandDeps } from './commands.ts';
export { isVlanName, listNetworkInterfaces, pciAddressFromPath } from './interfaces.ts';
export type { InterfaceAddresses, ListNetworkInterfacesOptions } from './interfaces.ts';
export { collectInventory, physicalMemoryMb, toInventoryDisk } from './inventory.ts';
export type { CollectInventoryOptions, SystemInfoSource } from './inventory.ts';
export { Inventory, InventoryCpu, InventoryDisk, InventoryInterface } from './schema.ts';
