/**
 * The one way the agent runs external programs: argv arrays, never a shell.
 *
 * Production code receives a `CommandRunner` through its dependencies so tests can inject a
 * scripted fake (test/helpers/fake-runner.ts) or a real runner.
 *
 * The real runner is node:child_process, not execa: execa's module graph and its per-command
 * stream machinery cost the agent several MiB of peak RSS during a deploy, and it kept every
 * line of podman's debug log of a pull (figures in docs/benchmarks.md). The name
 * `createExecaRunner` stays for its callers.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
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
 * One output stream of a child. Read whole: kept up to MAX_OUTPUT_CHARS. Read line by line: each
 * line (without its `\n` or `\r\n`) goes to `onLine` as it completes and only the last
 * LINE_TAIL_CHARS are kept — podman's debug log of a pull or bootc's install log never pile up
 * in the agent's memory.
 */
function outputCollector(onLine: ((line: string) => void) | undefined, onOverflow: () => void) {
  let kept = '';
  let pending = '';
  let overflowed = false;
  const keep = (text: string) => {
    kept += text;
    if (onLine) {
      if (kept.length > 2 * LINE_TAIL_CHARS) kept = kept.slice(-LINE_TAIL_CHARS);
    } else if (kept.length > MAX_OUTPUT_CHARS && !overflowed) {
      overflowed = true;
      onOverflow();
    }
  };
  const lines = (text: string, final: boolean) => {
    const parts = (pending + text).split('\n');
    pending = final ? '' : parts.pop()!;
    for (const line of parts) if (!final || line !== '') onLine!(line.endsWith('\r') ? line.slice(0, -1) : line);
  };
  return {
    push(text: string): void {
      keep(text);
      if (onLine) lines(text, false);
    },
    end(): void {
      if (onLine && pending) lines('', true);
    },
    get overflowed() { return overflowed; },
    text: () => (onLine && kept.length > LINE_TAIL_CHARS ? kept.slice(-LINE_TAIL_CHARS) : kept),
  };
}

// Children still running when the agent exits get SIGTERM, as systemd would give them.
const running = new Set<ChildProcess>();
function track(child: ChildProcess): void {
  if (running.size === 0 && !process.listeners('exit').includes(killRunning)) process.on('exit', killRunning);
  running.add(child);
  child.once('close', () => running.delete(child));
}
function killRunning(): void {
  for (const child of running) child.kill('SIGTERM');
}

interface Outcome {
  exitCode: number | undefined;
  signal: NodeJS.Signals | null;
  canceled: boolean;
  timedOut: boolean;
  overflowed: boolean;
  error: NodeJS.ErrnoException | undefined;
  stdout: string;
  stderr: string;
}

// Spawns `file`, feeds `input`, collects the output, and stops it on cancel, timeout or too much output.
function spawnCommand(file: string, args: readonly string[], options: RunOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let canceled = false;
    let timedOut = false;
    let forceKill: NodeJS.Timeout | undefined;
    const child = spawn(file, args, {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: options.env ? { ...process.env, ...options.env } : process.env,
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    const stop = () => {
      child.kill('SIGTERM');
      forceKill ??= setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_MS);
    };
    const stdout = outputCollector(options.onStdoutLine, stop);
    const stderr = outputCollector(options.onStderrLine, stop);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => stdout.push(d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
    const onAbort = () => { canceled = true; stop(); };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = options.timeoutMs ? setTimeout(() => { timedOut = true; stop(); }, options.timeoutMs) : undefined;
    let error: NodeJS.ErrnoException | undefined;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      clearTimeout(forceKill);
      options.signal?.removeEventListener('abort', onAbort);
      stdout.end();
      stderr.end();
      resolve({
        exitCode: code ?? undefined, signal, canceled, timedOut, error,
        overflowed: stdout.overflowed || stderr.overflowed, stdout: stdout.text(), stderr: stderr.text(),
      });
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      error = err;
      if (child.pid === undefined) finish(null, null);
    });
    child.once('close', finish);
    if (child.pid !== undefined) track(child);
    if (options.input !== undefined) {
      child.stdin!.on('error', () => undefined); // a program that exits without reading its input
      child.stdin!.end(options.input);
    }
    if (options.signal?.aborted) onAbort();
  });
}

/** The production runner, over node:child_process. Non-zero exits become `CommandFailedError`. */
export function createExecaRunner(): CommandRunner {
  return {
    async run(file, args, options = {}) {
      const started = performance.now();
      const secrets = options.secrets ?? [];
      const argv = [file, ...args];
      const shownArgv = argv.map((a) => redactSecrets(a, secrets));
      const result = await spawnCommand(file, args, options);
      const { stdout, stderr } = result;
      const durationMs = performance.now() - started;
      const tail = tailOf(stderr || stdout, secrets);
      if (result.canceled) {
        throw new CommandFailedError('CANCELLED', shownArgv, result.exitCode, tail, { cause: options.signal?.reason });
      }
      if (result.timedOut) {
        throw new CommandFailedError('COMMAND_TIMEOUT', shownArgv, result.exitCode, tail, {
          details: { timeout_ms: options.timeoutMs },
        });
      }
      if (result.overflowed) {
        throw new CommandFailedError('COMMAND_FAILED', shownArgv, result.exitCode, `${tail}\n(stopped: more than ${MAX_OUTPUT_CHARS} characters of output)`.trim());
      }
      if (result.exitCode === undefined) {
        const code = result.error?.code === 'ENOENT' ? 'COMMAND_NOT_FOUND' : 'COMMAND_FAILED';
        throw new CommandFailedError(code, shownArgv, undefined, tail || redactSecrets(result.error?.message ?? (result.signal ? `killed by ${result.signal}` : ''), secrets), {
          ...(result.error ? { cause: result.error } : {}),
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
