/**
 * IPA's `erase_devices_metadata` clean step: make disks look blank without writing them
 * whole (each disk as ./wipe.ts does it).
 * @module
 */
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { BlockDevice } from './devices.ts';
import type { KernelEnvironment } from './kernel-partitions.ts';
import { eraseDiskMetadata } from './wipe.ts';

export interface EraseDevicesMetadataOptions extends KernelEnvironment {
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

function isCancelled(err: unknown): boolean {
  return isAgentError(err) && err.code === 'CANCELLED';
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
  const { runner, log } = options;
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
      await eraseDiskMetadata(runner, device.name, options);
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
