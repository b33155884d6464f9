/**
 * Waiting for the root device, like IPA's `wait_for_disks`: disks of slow controllers (SAN,
 * some RAID cards) show up seconds after boot.
 * @module
 */
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { listBlockDevices, type BlockDevice } from './devices.ts';
import { selectRootDevice, type RootDeviceSelection } from './hints.ts';
import { defaultSleep, pause, type Sleep } from './sleep.ts';

export type { Sleep } from './sleep.ts';

export interface WaitForRootDeviceOptions {
  runner: CommandRunner;
  selection: RootDeviceSelection;
  /** `disk_wait_attempts`: how many listings to try (at least 1). */
  attempts: number;
  /** `disk_wait_delay`: seconds between listings. */
  delaySeconds: number;
  signal?: AbortSignal;
  log?: Logger;
  includeLoop?: boolean;
  sysRoot?: string;
  byPathDir?: string;
  /** Injected in tests so they do not sleep. */
  sleep?: Sleep;
}

export interface RootDeviceFound {
  device: BlockDevice;
  /** Every device of the successful listing (for logs and step results). */
  devices: BlockDevice[];
  attempt: number;
}

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new AgentError('CANCELLED', 'Waiting for the root device was cancelled', { cause: signal.reason });
  }
}

/**
 * List disks and select the root device, retrying `attempts` times `delaySeconds` apart while
 * the answer is `DEVICE_NOT_FOUND`. Malformed hints, listing failures and cancellation fail
 * at once. After the last attempt the last `DEVICE_NOT_FOUND` is thrown.
 */
export async function waitForRootDevice(options: WaitForRootDeviceOptions): Promise<RootDeviceFound> {
  const attempts = Math.max(1, Math.floor(options.attempts));
  const sleep = options.sleep ?? defaultSleep;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    throwIfCancelled(options.signal);
    const devices = await listBlockDevices(options);
    try {
      const device = selectRootDevice(devices, options.selection);
      options.log?.info({ device: device.name, attempt, root_device: options.selection.root_device }, 'root device found');
      return { device, devices, attempt };
    } catch (err) {
      if (!isAgentError(err) || err.code !== 'DEVICE_NOT_FOUND') throw err;
      lastError = err;
      options.log?.debug({ attempt, attempts, devices: devices.map((d) => d.name) }, 'still waiting for the root device');
    }
    if (attempt < attempts) await pause(sleep, options.delaySeconds * 1000, options.signal, 'Waiting for the root device');
  }
  options.log?.warn({ attempts, delay_seconds: options.delaySeconds }, 'the root device was not detected');
  throw lastError;
}
