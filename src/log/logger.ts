/**
 * The agent's single pino root. No other module imports pino: they receive a `Logger`
 * and call `log.child({ component })`.
 * @module
 */
import { fchmodSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { DestinationStream, Logger as PinoLogger } from 'pino';
import { redactRecord, truncateText, type ErrorSerializer } from './redact.ts';

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

// The message strings of a call are cut like the strings of its record (redact.ts's limits); an
// error logged without a message would print its whole message as `msg`, so it gets a cut one.
function boundMessages(this: PinoLogger, args: unknown[], method: (...a: unknown[]) => void): void {
  const bounded = args.map((a) => (typeof a === 'string' ? truncateText(a) : a));
  if (bounded[0] instanceof Error && typeof bounded[1] !== 'string') bounded.splice(1, 0, truncateText(bounded[0].message));
  method.apply(this, bounded);
}

// The log holds what the conductor sent (masked, but still the node's details): only root reads
// it. The mode of open() applies to a new file only, so an existing one is chmod'ed too.
function openLogFile(file: string): number {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const fd = openSync(file, 'a', 0o600);
  fchmodSync(fd, 0o600);
  return fd;
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
  if (options.file) streams.push({ stream: pino.destination({ dest: openLogFile(options.file), sync: false }) });
  const root = pino(
    {
      name: 'bootc-agent',
      onChild: guardChildren,
      level: options.level ?? 'info',
      hooks: { logMethod: boundMessages },
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
