/**
 * IPA's `erase_devices_metadata` clean step: make disks look blank without writing them
 * whole. Partition and filesystem signatures, both GPT copies and the MBR are wiped
 * (`disk_utils.destroy_disk_metadata`: wipefs, dd over the GPT areas, `sgdisk --zap-all`).
 * @module
 */
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { BlockDevice } from './devices.ts';
import { runLsblk } from './lsblk.ts';

export interface EraseDevicesMetadataOptions {
  runner: CommandRunner;
  /** The disks to erase, as listed by `listBlockDevices` (the caller decides which). */
  devices: readonly BlockDevice[];
  signal?: AbortSignal;
  log?: Logger;
}

export interface EraseDevicesMetadataResult {
  erased: string[];
  skipped: { name: string; reason: string }[];
}

// 33 sectors of 512 bytes hold the protective MBR, the GPT header and its entries; IPA uses
// 33 for 512-byte and 5 for 4096-byte sectors, which this formula reproduces.
const GPT_BYTES = 33 * 512;

/** How many sectors the primary and the backup GPT occupy for a logical sector size. */
export function gptSectors(sectorSize: number): number {
  return Math.ceil(GPT_BYTES / sectorSize);
}

/** The two dd argument lists that zero the primary and (if there is room) the backup GPT. */
export function buildGptWipeArgs(device: string, sectorSize: number, sizeBytes: number): string[][] {
  const total = Math.floor(sizeBytes / sectorSize);
  const sectors = gptSectors(sectorSize);
  const common = [`bs=${sectorSize}`, 'if=/dev/zero', `of=${device}`];
  const args = [[...common, `count=${Math.min(sectors, total)}`, 'oflag=direct']];
  if (total > sectors) args.push([...common, `count=${sectors}`, 'oflag=direct', `seek=${total - sectors}`]);
  return args;
}

// Device paths become argv; anything not under /dev/ is refused rather than passed to dd.
function assertDevicePath(name: string): void {
  if (!/^\/dev\/[A-Za-z0-9._/-]+$/.test(name) || name.includes('..')) {
    throw new AgentError('BLOCK_DEVICE_ERROR', `Refusing to erase "${name}": not a /dev path`);
  }
}

function isCancelled(err: unknown): boolean {
  return isAgentError(err) && err.code === 'CANCELLED';
}

async function readNumber(runner: CommandRunner, args: string[], signal?: AbortSignal): Promise<number> {
  const { stdout } = await runner.run('blockdev', args, { signal });
  const value = Number(stdout.trim());
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new AgentError('BLOCK_DEVICE_ERROR', `blockdev ${args.join(' ')} printed ${JSON.stringify(stdout.trim())}`);
  }
  return value;
}

// Partition-table syncing is best effort: partx fails on a disk without a table, and on a
// kernel that already re-read the table there is nothing left to delete.
async function tryRun(runner: CommandRunner, file: string, args: string[], signal?: AbortSignal, log?: Logger): Promise<void> {
  try {
    await runner.run(file, args, { signal });
  } catch (err) {
    if (isCancelled(err)) throw err;
    log?.debug({ err, argv: [file, ...args] }, 'ignored failure');
  }
}

async function eraseDevice(runner: CommandRunner, device: BlockDevice, signal?: AbortSignal, log?: Logger): Promise<void> {
  const dev = device.name;
  assertDevicePath(dev);
  // The ramdisk kernel may lack partition-table parsers: partx adds the partitions the
  // table describes so their filesystem signatures can be wiped too.
  await tryRun(runner, 'partx', ['-u', '--', dev], signal, log);
  const rows = await runLsblk(runner, { signal, device: dev });
  const partitions = rows
    .filter((r) => r.type === 'part' && `/dev/${r.kname}` !== dev)
    .map((r) => `/dev/${r.kname}`)
    .sort()
    .reverse();
  for (const part of partitions) {
    assertDevicePath(part);
    await runner.run('wipefs', ['--force', '--all', '--', part], { signal });
  }
  await runner.run('wipefs', ['--force', '--all', '--', dev], { signal });
  const sectorSize = await readNumber(runner, ['--getss', dev], signal);
  const sizeBytes = await readNumber(runner, ['--getsize64', dev], signal);
  for (const args of buildGptWipeArgs(dev, sectorSize, sizeBytes)) await runner.run('dd', args, { signal });
  await runner.run('sgdisk', ['--zap-all', '--', dev], { signal });
  // Drop the now stale partition nodes (the table they came from is gone).
  if (partitions.length > 0) await tryRun(runner, 'partx', ['-d', '--', dev], signal, log);
  log?.info({ device: dev, partitions }, 'disk metadata erased');
}

function describeFailure(err: unknown): Record<string, unknown> {
  if (!isAgentError(err)) return { message: err instanceof Error ? err.message : String(err) };
  return { code: err.code, message: err.message, ...err.details };
}

/**
 * Erase partition tables and signatures of every writable, non-removable disk given. All
 * disks are tried; failures are collected and reported together as one `BLOCK_DEVICE_ERROR`
 * naming each device. Cancellation stops at once.
 */
export async function eraseDevicesMetadata(options: EraseDevicesMetadataOptions): Promise<EraseDevicesMetadataResult> {
  const { runner, signal, log } = options;
  const result: EraseDevicesMetadataResult = { erased: [], skipped: [] };
  const failures = new Map<string, unknown>();
  for (const device of options.devices) {
    if (device.removable || device.read_only) {
      const reason = device.read_only ? 'read-only' : 'removable';
      log?.info({ device: device.name, reason }, 'skipping metadata erase');
      result.skipped.push({ name: device.name, reason });
      continue;
    }
    try {
      await eraseDevice(runner, device, signal, log);
      result.erased.push(device.name);
    } catch (err) {
      if (isCancelled(err)) throw err;
      log?.error({ err, device: device.name }, 'failed to erase the metadata on the device');
      failures.set(device.name, err);
    }
  }
  if (failures.size > 0) {
    const summary = [...failures].map(([name, err]) => `"${name}": ${err instanceof Error ? err.message : String(err)}`);
    throw new AgentError('BLOCK_DEVICE_ERROR', `Failed to erase the metadata on the device(s): ${summary.join('; ')}`, {
      cause: failures.values().next().value,
      details: { failed: Object.fromEntries([...failures].map(([name, err]) => [name, describeFailure(err)])), erased: result.erased },
    });
  }
  return result;
}
