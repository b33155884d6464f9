import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CommandContext } from '../../src/commands/types.ts';
import { createHardwareCommands, type CollectInventoryOptions, type Inventory } from '../../src/hardware/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';

const INVENTORY = { hostname: 'node-7' } as unknown as Inventory;

function context(signal = new AbortController().signal): CommandContext {
  return { signal, log: createSilentLogger(), reportProgress: () => {} };
}

describe('createHardwareCommands', () => {
  test('system.get_inventory is a sync command with strict empty params', () => {
    const [command] = createHardwareCommands({ runner: createFakeRunner() });
    assert.ok(command);
    assert.equal(command.name, 'system.get_inventory');
    assert.equal(command.mode, 'sync');
    assert.deepEqual(command.params.parse({}), {});
    assert.equal(command.params.safeParse({ verbose: true }).success, false);
  });

  test('runs the collection with the configured options and the command signal', async () => {
    const runner = createFakeRunner();
    const seen: CollectInventoryOptions[] = [];
    const [command] = createHardwareCommands({
      runner,
      bootif: '01-aa-bb-cc-dd-ee-ff',
      includeLoop: true,
      collect: async (options) => {
        seen.push(options);
        return INVENTORY;
      },
    });
    const ctx = context();
    assert.deepEqual(await command?.run({}, ctx), { inventory: INVENTORY });
    assert.equal(seen[0]?.runner, runner);
    assert.equal(seen[0]?.bootif, '01-aa-bb-cc-dd-ee-ff');
    assert.equal(seen[0]?.includeLoop, true);
    assert.equal(seen[0]?.signal, ctx.signal);
  });
});
