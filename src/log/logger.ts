/**
 * The agent's single pino root. No other module imports pino: they receive a `Logger`
 * and call `log.child({ component })`.
 * @module
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { DestinationStream, Logger as PinoLogger } from 'pino';
import { redactRecord, type ErrorSerializer } from './redact.ts';

export type Logger = PinoLogger;

// Secrets must never reach a log line: every record, every child's bindings and every error
// go through redactRecord (src/log/redact.ts), which masks secret-keyed values at any depth.
const serializeError: ErrorSerializer = (err) => pino.stdSerializers.err(err);
const redact = (record: object): Record<string, unknown> => redactRecord(record, serializeError) as Record<string, unknown>;

// pino formats a child's bindings without `formatters.bindings` (that one is for the root's
// own): every logger's `child` redacts them first, and `onChild` passes that on to each child.
function guardChildren(logger: PinoLogger): void {
  const child = logger.child;
  logger.child = function redactedChild(this: PinoLogger, bindings, options) {
    return child.call(this, redact(bindings), options);
  } as PinoLogger['child'];
}

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
  const root = pino(
    {
      name: 'bootc-agent',
      onChild: guardChildren,
      level: options.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), bindings: redact, log: redact },
      // formatters.log runs first and has already turned every error (`log.error(err)` too) into
      // its redacted record: pino's own err serializer would serialize that record again.
      serializers: { err: (record: unknown) => record },
    },
    pino.multistream(streams.map((s) => ({ ...s, level: 'trace' as const }))),
  );
  guardChildren(root);
  return root;
}

/** A logger that drops everything: for unit tests that do not look at logs. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
