/**
 * Clean steps: `erase_devices_metadata` (IPA's default automated-cleaning step, priority 99).
 * @module
 */
import type { CommandRunner } from '../exec/index.ts';
import { eraseDevicesMetadata, listBlockDevices, rootDeviceSelectionFromNode, skippedDevices } from '../disk/index.ts';
import type { StepDefinition } from './steps.ts';

export interface CleanStepDeps {
  runner: CommandRunner;
  includeLoopDevices: boolean;
}

export function createCleanSteps(deps: CleanStepDeps): StepDefinition[] {
  return [{
    interface: 'clean',
    step: 'erase_devices_metadata',
    priority: 99,
    reboot_requested: false,
    abortable: true,
    run: async (_args, ctx) => {
      const devices = await listBlockDevices({ runner: deps.runner, signal: ctx.signal, log: ctx.log, includeLoop: deps.includeLoopDevices });
      // Disks the operator listed in properties.skip_block_devices are never touched.
      const skipped = skippedDevices(devices, rootDeviceSelectionFromNode(ctx.node).skip_block_devices);
      ctx.reportProgress({ phase: 'erase', message: `erasing metadata on ${devices.length - skipped.size} disk(s)` });
      const result = await eraseDevicesMetadata({ runner: deps.runner, signal: ctx.signal, log: ctx.log, devices: devices.filter((d) => !skipped.has(d.name)) });
      return { ...result, skipped: [...result.skipped, ...[...skipped].map((name) => ({ name, reason: 'skip_block_devices' }))] };
    },
  }];
}
