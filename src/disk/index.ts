/**
 * Disks: listing them as IPA reports them, choosing the root device from root device hints,
 * waiting for it to appear, their partition tables, making the kernel's partitions match the
 * table, and erasing disk metadata (the clean step, or one disk after a failed deploy).
 * @example
 * const { device } = await waitForRootDevice({
 *   runner, signal, log,
 *   selection: rootDeviceSelectionFromNode(node), // { root_device, skip_block_devices }
 *   attempts: config.disk_wait_attempts,
 *   delaySeconds: config.disk_wait_delay,
 *   includeLoop: config.include_loop_devices,
 * });
 * // device.name === '/dev/sda'
 * @module
 */
export { BlockDevice, listBlockDevices, readByPathLinks, selectDiskRows, splitWwn, toBlockDevice } from './devices.ts';
export type { ListBlockDevicesOptions } from './devices.ts';
export { eraseDevicesMetadata } from './erase.ts';
export type { EraseDevicesMetadataOptions, EraseDevicesMetadataResult } from './erase.ts';
export { normalizeHintValue, parseHint, parseRootDeviceHints, pyQuote, VALID_ROOT_DEVICE_HINTS } from './hint-expression.ts';
export type { HintName, ParsedHint } from './hint-expression.ts';
export {
  findDevicesByHints,
  guessRootDisk,
  matchesHint,
  MIN_ROOT_DISK_BYTES,
  rootDeviceSelectionFromNode,
  selectRootDevice,
  skippedDevices,
} from './hints.ts';
export type { RootDeviceSelection } from './hints.ts';
export { kernelMismatches, syncKernelPartitions } from './kernel-partitions.ts';
export type { KernelEnvironment, KernelPartitionSync, SyncKernelPartitionsOptions } from './kernel-partitions.ts';
export { buildLsblkArgs, LSBLK_COLUMNS, LsblkRow, parseLsblkJson, runLsblk } from './lsblk.ts';
export type { RunLsblkOptions } from './lsblk.ts';
export {
  describePartitions,
  freeTailBytes,
  parseSfdiskJson,
  partitionBytes,
  partitionNodePath,
  partitionUuids,
  readPartitionTable,
  readPartitionTableIfAny,
  SfdiskOutput,
  usedEndSector,
} from './partition-table.ts';
export type { PartitionInfo, PartitionTable, ReadPartitionTableOptions, TablePartition } from './partition-table.ts';
export { defaultSleep, pause } from './sleep.ts';
export { waitForRootDevice } from './wait.ts';
export type { RootDeviceFound, Sleep, WaitForRootDeviceOptions } from './wait.ts';
export { buildGptWipeArgs, eraseDiskMetadata, gptSectors, wipeDisk } from './wipe.ts';
export type { EraseDiskOptions, WipeDiskOptions } from './wipe.ts';
export { createScratch, mountsBelow, removeScratchLeftovers } from './scratch.ts';
export type { Scratch, ScratchOptions } from './scratch.ts';
