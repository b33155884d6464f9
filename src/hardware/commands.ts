/**
 * Agent commands of the hardware area.
 * @module
 */
import { z } from 'zod';
import { defineCommand, type CommandDefinition } from '../commands/types.ts';
import type { CollectInventoryOptions } from './inventory.ts';
import { collectInventory } from './inventory.ts';

/** What the commands need: the runner and the inventory options that come from config. */
export type HardwareCommandDeps = Omit<CollectInventoryOptions, 'signal' | 'log'> & {
  /** Replaced in tests of the wiring; defaults to `collectInventory`. */
  collect?: typeof collectInventory;
};

/** `system.get_inventory` (sync): `{}` → `{ inventory }`. */
export function createHardwareCommands(deps: HardwareCommandDeps): CommandDefinition[] {
  const { collect = collectInventory, ...inventoryOptions } = deps;
  return [
    defineCommand({
      name: 'system.get_inventory',
      mode: 'sync',
      params: z.object({}).strict(),
      async run(_params, ctx) {
        const inventory = await collect({ ...inventoryOptions, signal: ctx.signal, log: ctx.log.child({ component: 'hardware' }) });
        return { inventory };
      },
    }),
  ];
}
