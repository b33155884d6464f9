/**
 * The `standby`, `system` and `log` extensions: power actions, sync, lockdown, partition
 * UUIDs of the last deploy, and system log collection.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { PowerController } from '../system/index.ts';
import { defineCommand, type CommandDefinition } from './types.ts';

const NoParams = z.object({}).strict();

export interface MachineCommandDeps {
  power: PowerController;
  /** Builds the base64 log archive. */
  collectLogs(signal: AbortSignal): Promise<{ system_logs: string }>;
  /** Stops heartbeats and closes the API (system.lockdown). */
  lockdown(): Promise<void>;
  /** Partition UUIDs recorded by the last successful deploy step (IPA keys). */
  partitionUuids(): Record<string, string>;
  /** Delay between answering a power command and acting, so the reply reaches the conductor. */
  replyGraceMs?: number;
}

export function createMachineCommands(deps: MachineCommandDeps): CommandDefinition[] {
  const grace = deps.replyGraceMs ?? 1000;
  // The conductor must see the reply before the machine goes away: answer, wait, then act.
  const afterReply = async (signal: AbortSignal, action: () => Promise<void>) => {
    await sleep(grace, undefined, { signal });
    await deps.power.sync(signal);
    await action();
  };
  return [
    defineCommand({
      name: 'standby.power_off',
      mode: 'async',
      params: NoParams,
      run: async (_p, ctx) => { await afterReply(ctx.signal, () => deps.power.powerOff()); return 'powering off'; },
    }),
    defineCommand({
      name: 'standby.run_image',
      mode: 'async',
      params: NoParams,
      run: async (_p, ctx) => { await afterReply(ctx.signal, () => deps.power.reboot()); return 'rebooting'; },
    }),
    defineCommand({
      name: 'standby.sync',
      mode: 'sync',
      params: NoParams,
      run: async (_p, ctx) => { await deps.power.sync(ctx.signal); return null; },
    }),
    defineCommand({
      name: 'standby.get_partition_uuids',
      mode: 'sync',
      params: NoParams,
      run: async () => deps.partitionUuids(),
    }),
    defineCommand({
      name: 'system.lockdown',
      mode: 'async',
      params: NoParams,
      run: async (_p, ctx) => {
        await sleep(grace, undefined, { signal: ctx.signal });
        await deps.power.sync(ctx.signal);
        await deps.lockdown();
        return 'locked down';
      },
    }),
    defineCommand({
      name: 'log.collect_system_logs',
      mode: 'sync',
      params: NoParams,
      run: async (_p, ctx) => deps.collectLogs(ctx.signal),
    }),
  ];
}
