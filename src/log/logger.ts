/**
 * The agent's single pino root. No other module imports pino: they receive a `Logger`
 * and call `log.child({ component })`.
 * @module
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { DestinationStream, Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

// Secrets must never reach a log line. Paths cover the shapes we log: request params,
// step args, conductor replies and headers (pino's `*` matches one level).
const SECRET_KEYS = [
  'agent_token', 'token', 'access_token', 'refresh_token', 'identitytoken', 'password', 'passwd',
  'oci_pull_secret', 'pull_secret', 'image_pull_secret', 'auth', 'authorization', 'Authorization',
  'image_request_authorization', 'configdrive', 'bootc_authorized_keys', 'private_key', 'secret',
];
export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.*.${k}`),
  'req.headers.authorization',
  'req.query.agent_token',
];

export interface LoggerOptions {
  level?: string;
  /** Also append JSON lines to this file (collected by `log.collect_system_logs`). */
  file?: string | undefined;
  /** Where to write besides the file (default: stdout). Tests pass a sink. */
  stream?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const streams: pino.StreamEntry[] = [{ stream: options.stream ?? pino.destination({ dest: 1, sync: false }) }];
  if (options.file) {
    mkdirSync(dirname(options.file), { recursive: true, mode: 0o700 });
    streams.push({ stream: pino.destination({ dest: options.file, sync: false, mkdir: true }) });
  }
  return pino(
    {
      name: 'bootc-agent',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '***' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.multistream(streams.map((s) => ({ ...s, level: 'trace' as const }))),
  );
}

/** A logger that drops everything: for unit tests that do not look at logs. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
