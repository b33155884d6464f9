/**
 * The one way the agent runs external programs: argv arrays, never a shell.
 *
 * Production code receives a `CommandRunner` through its dependencies so tests can inject a
 * scripted fake (test/helpers/fake-runner.ts) or a real runner.
 *
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
  /**
   * Called with each line of stdout / stderr as it arrives (progress parsing). Such a stream is
   * not kept whole: the result (and an error's tail) holds only its last LINE_TAIL_CHARS.
   */
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

/** Largest output kept from a stream the caller reads whole (longer: the command fails). */
export const MAX_OUTPUT_CHARS = 64 * 1024 * 1024;
/** What is kept of a stream read line by line: its last characters, for the error's tail. */
export const LINE_TAIL_CHARS = 64 * 1024;
/** Between SIGTERM and SIGKILL for a command cancelled or timed out. */
const FORCE_KILL_MS = 5000;

/**
 * One output stream, collected by us rather than by execa (whose transforms yield nothing), so
 * nothing is buffered twice and no huge string ever reaches execa's message building. Read
 * whole: kept up to MAX_OUTPUT_CHARS, beyond which `onOverflow` stops the program. Read line by
 * line: each line (without its `\n` or `\r\n`) goes to `onLine` as it arrives and only the last
 * LINE_TAIL_CHARS are kept, so podman's debug log of a pull or bootc's install log never pile
 * up in the agent's memory.
 */
function outputCollector(onLine: ((line: string) => void) | undefined, onOverflow: () => void) {
  let kept = '';
  let overflowed = false;
  const decoder = new TextDecoder();
  const keep = (text: string) => {
    if (overflowed) return;
    kept += text;
    if (onLine) {
      if (kept.length > 2 * LINE_TAIL_CHARS) kept = kept.slice(-LINE_TAIL_CHARS);
    } else if (kept.length > MAX_OUTPUT_CHARS) {
      overflowed = true;
      kept = kept.slice(-LINE_TAIL_CHARS);
      onOverflow();
    }
  };
  const transform = onLine
    ? function* lines(line: unknown) {
      const text = String(line);
      keep(text);
      onLine(text.endsWith('\n') ? text.slice(0, text.endsWith('\r\n') ? -2 : -1) : text);
    }
    : function* whole(chunk: unknown) {
      keep(decoder.decode(chunk as Uint8Array, { stream: true }));
    };
  return {
    transform: { transform, binary: !onLine, preserveNewlines: true },
    get overflowed() { return overflowed; },
    text: () => (onLine && kept.length > LINE_TAIL_CHARS ? kept.slice(-LINE_TAIL_CHARS) : kept),
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
      let stop = () => {};
      const out = outputCollector(options.onStdoutLine, () => stop());
      const err = outputCollector(options.onStderrLine, () => stop());
      const subprocess = execa(file, args, {
        reject: false,
        stripFinalNewline: false,
        cancelSignal: options.signal,
        forceKillAfterDelay: FORCE_KILL_MS,
        timeout: options.timeoutMs,
        ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
        env: options.env,
        cwd: options.cwd,
        stdout: [out.transform],
        stderr: [err.transform],
      });
      stop = () => { subprocess.kill(); };
      const result = await subprocess;
      const stdout = out.text();
      const stderr = err.text();
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
      if (out.overflowed || err.overflowed) {
        throw new CommandFailedError('COMMAND_FAILED', shownArgv, result.exitCode, `${tail}\n(stopped: more than ${MAX_OUTPUT_CHARS} characters of output)`.trim());
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
