/**
 * Commands: the registry, the single-flight executor and the IPA result model.
 * @example
 * const executor = new CommandExecutor({ log });
 * executor.register([defineCommand({ name: 'standby.sync', mode: 'sync', params: z.object({}).strict(), run: sync })]);
 * @module
 */
export { CommandExecutor, toWireError } from './executor.ts';
export { defineCommand } from './types.ts';
export type { CommandContext, CommandDefinition, CommandStatus, Progress, WireCommandError, WireCommandResult } from './types.ts';
