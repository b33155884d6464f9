/**
 * Logging: one pino root with secret redaction.
 * @example
 * const log = createLogger({ level: 'debug', file: '/run/bootc-agent/agent.log' });
 * log.child({ component: 'api' }).info({ port }, 'listening');
 * @module
 */
export { createLogger, createSilentLogger } from './logger.ts';
export { CENSOR, redactRecord, SECRET_KEYS } from './redact.ts';
export type { Logger, LoggerOptions } from './logger.ts';
