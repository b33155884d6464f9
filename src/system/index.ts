/**
 * The machine itself: power actions and system log collection.
 * @example
 * const power = createSystemPowerController(runner, log);
 * const { system_logs } = await collectSystemLogs({ runner, log, signal, secrets: () => [token] });
 * @module
 */
export { createSystemPowerController } from './power.ts';
export { collectSystemLogs, DEFAULT_LOG_SOURCES } from './logs.ts';
export type { PowerController } from './power.ts';
export type { CollectLogsOptions, LogSource } from './logs.ts';
