/**
 * Commands: the registry, the single-flight executor and the IPA result model.
 * @example
 * const executor = new CommandExecutor({ log });
 * executor.register([defineCommand({ name: 'standby.sync', mode: 'sync', params: z.object({}).strict(), run: sync })]);
 * @module
 */
export { CommandExecutor, toWireError } from './executor.ts';
export { defineCommand } from './types.ts';
export { StepRegistry, checkVersions, NodeInfo, HARDWARE_MANAGER_NAME, HARDWARE_MANAGER_VERSIONS } from './steps.ts';
export { createStepCommands } from './step-commands.ts';
export { createMachineCommands } from './machine-commands.ts';
export { createCleanSteps } from './clean-steps.ts';
export { JournalEntry, JournalFile } from './journal.ts';
export type { CommandJournal, JournalFacts, JournalStorage, LeftOver } from './journal.ts';
export { recoverInterruptedCommand } from './recovery.ts';
export type { RecoveryCleanup, RecoveryDeps } from './recovery.ts';
export type { StepDefinition, StepContext, StepInterface } from './steps.ts';
export type { MachineCommandDeps } from './machine-commands.ts';
export type { CommandContext, CommandDefinition, CommandStatus, Progress, WireCommandError, WireCommandResult } from './types.ts';
