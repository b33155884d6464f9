/**
 * The one way the agent runs external programs: argv arrays, never a shell.
 *
 * Production code receives a `CommandRunner` through its dependencies so tests can inject a
 * scripted fake (test/helpers/fake-runner.ts) or a real runner.
 * @module
 */
import { CommandFailedError } from '../errors.ts';

export interface RunOptions {
  signal?: AbortSignal;
  /** Written to the program's stdin (use this for secrets, never argv). */
  input?: string | Uint8Array;
  /** Extra environment variables, added to the agent's own. */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Exit codes that count as success (default: only 0). */
  okExitCodes?: readonly number[];
  /** Called with each line of stdout / stderr as it arrives (progress parsing). */
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
  /** Strings replaced by `***` in errors built from this run (argv, stderr). */
  secrets?: readonly string[];
  cwd?: string;
}

export interface RunResult {
  argv: readonly string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface CommandRunner {
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

const TAIL_LINES = 20;
const TAIL_CHARS = 2000;

/** The last lines of a program's output, short enough for a conductor's `details`. */
export function tailOf(text: string, secrets: readonly string[] = []): string {
  let lines = text.trimEnd().split('\n');
  if (lines.length > TAIL_LINES) lines = lines.slice(-TAIL_LINES);
  let tail = redactSecrets(lines.join('\n'), secrets);
  if (tail.length > TAIL_CHARS) tail = `…${tail.slice(-TAIL_CHARS)}`;
  return tail;
}

export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}

// A line-splitting generator for execa's stdout/stderr transforms.
function lineTap(callback: (line: string) => void) {
  return function* tap(line: unknown) {
    callback(String(line));
    yield line;
  };
}

// execa loads on the first command, not at start-up: an idle agent never runs one.
let execaModule: Promise<typeof import('execa')> | undefined;

/** The production runner, over execa. Non-zero exits become `CommandFailedError`. */
export function createExecaRunner(): CommandRunner {
  return {
    async run(file, args, options = {}) {
      const { execa } = await (execaModule ??= import('execa'));
      const started = performance.now();
      const secrets = options.secrets ?? [];
      const argv = [file, ...args];
      const shownArgv = argv.map((a) => redactSecrets(a, secrets));
      const result = await execa(file, args, {
        reject: false,
        stripFinalNewline: false,
        cancelSignal: options.signal,
        forceKillAfterDelay: 5000,
        timeout: options.timeoutMs,
        input: options.input,
        env: options.env,
        cwd: options.cwd,
        stdout: options.onStdoutLine ? [lineTap(options.onStdoutLine), 'pipe'] : 'pipe',
        stderr: options.onStderrLine ? [lineTap(options.onStderrLine), 'pipe'] : 'pipe',
        maxBuffer: 64 * 1024 * 1024,
      });
      const stdout = String(result.stdout ?? '');
      const stderr = String(result.stderr ?? '');
      const durationMs = performance.now() - started;
      const tail = tailOf(stderr || stdout, secrets);
      if (result.isCanceled) {
        throw new CommandFailedError('CANCELLED', shownArgv, result.exitCode, tail, { cause: options.signal?.reason });
      }
      if (result.timedOut) {
        throw new CommandFailedError('COMMAND_TIMEOUT', shownArgv, result.exitCode, tail, {
          details: { timeout_ms: options.timeoutMs },
        });
      }
      if (result.exitCode === undefined) {
        const causeCode = (result.cause as { code?: string } | undefined)?.code;
        const code = causeCode === 'ENOENT' ? 'COMMAND_NOT_FOUND' : 'COMMAND_FAILED';
        throw new CommandFailedError(code, shownArgv, undefined, tail || redactSecrets(result.shortMessage ?? '', secrets), {
          cause: result.cause,
          details: result.signal ? { signal: result.signal } : {},
        });
      }
      const ok = options.okExitCodes ?? [0];
      if (!ok.includes(result.exitCode)) {
        throw new CommandFailedError('COMMAND_FAILED', shownArgv, result.exitCode, tail);
      }
      return { argv: shownArgv, exitCode: result.exitCode, stdout, stderr, durationMs };
    },
  };
}
