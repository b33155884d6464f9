/**
 * A scripted CommandRunner for unit tests: each expected command (exact argv or a predicate)
 * gets an answer; any other command throws, so code under test can never reach the host.
 * Every call is recorded.
 * @example
 * const runner = createFakeRunner([
 *   { argv: ['lsblk', '-bia', '--json', '-o', 'KNAME'], stdout: '{"blockdevices":[]}' },
 *   { argv: (a) => a[0] === 'wipefs', times: Infinity },
 *   { argv: ['sgdisk', '--zap-all', '--', '/dev/sda'], exitCode: 2, stderr: 'boom' },
 * ]);
 * await code({ runner });
 * runner.assertDone(); // every scripted call with a finite `times` was used
 * @module
 */
import { CommandFailedError } from '../../src/errors.ts';
import { tailOf } from '../../src/exec/index.ts';
import type { CommandRunner, RunOptions, RunResult } from '../../src/exec/index.ts';

export type ArgvMatcher = readonly string[] | ((argv: readonly string[]) => boolean);

export interface ScriptedCall {
  /** The full argv (program first), or a predicate over it. */
  argv: ArgvMatcher;
  stdout?: string;
  stderr?: string;
  /** Non-zero (and not in `okExitCodes`) fails like the real runner: `CommandFailedError`. */
  exitCode?: number;
  /** Thrown instead of answering (e.g. `notInstalled('ipmitool')`). */
  error?: unknown;
  /** Compute the answer from the call (runs after `error`/`exitCode` are considered). */
  respond?: (argv: readonly string[], options: RunOptions) => Partial<RunResult> | Promise<Partial<RunResult>>;
  /** How many calls this entry answers (default 1; `Infinity` for any number). */
  times?: number;
}

export interface RecordedCall {
  argv: string[];
  options: RunOptions;
}

export interface FakeRunner extends CommandRunner {
  readonly calls: RecordedCall[];
  /** Append more expectations. */
  expect(...calls: ScriptedCall[]): FakeRunner;
  /** Throws if an entry with a finite `times` was not used up. */
  assertDone(): void;
  /** The argv of each call, joined with spaces (handy for `deepEqual`). */
  commandLines(): string[];
}

export interface FakeRunnerOptions {
  /** Require calls in script order (default: any order, first unused matching entry wins). */
  ordered?: boolean;
}

function matches(matcher: ArgvMatcher, argv: readonly string[]): boolean {
  if (typeof matcher === 'function') return matcher(argv);
  return matcher.length === argv.length && matcher.every((a, i) => a === argv[i]);
}

function describe(matcher: ArgvMatcher): string {
  return typeof matcher === 'function' ? `<predicate ${matcher.name || 'anonymous'}>` : JSON.stringify(matcher);
}

/** The error the real runner throws when a program is missing. */
export function notInstalled(program: string): CommandFailedError {
  return new CommandFailedError('COMMAND_NOT_FOUND', [program], undefined, `spawn ${program} ENOENT`);
}

export function createFakeRunner(script: readonly ScriptedCall[] = [], options: FakeRunnerOptions = {}): FakeRunner {
  const entries = script.map((call) => ({ call, left: call.times ?? 1 }));
  const calls: RecordedCall[] = [];

  const runner: FakeRunner = {
    calls,
    async run(file, args, runOptions = {}) {
      const argv = [file, ...args];
      calls.push({ argv, options: runOptions });
      const open = entries.filter((e) => e.left > 0);
      const entry = options.ordered ? (open[0] && matches(open[0].call.argv, argv) ? open[0] : undefined) : open.find((e) => matches(e.call.argv, argv));
      if (!entry) {
        const expected = options.ordered && open[0] ? ` (expected ${describe(open[0].call.argv)})` : '';
        throw new Error(`FakeRunner: unexpected command ${JSON.stringify(argv)}${expected}`);
      }
      entry.left -= 1;
      if (runOptions.signal?.aborted) {
        throw new CommandFailedError('CANCELLED', argv, undefined, '', { cause: runOptions.signal.reason });
      }
      const { call } = entry;
      if (call.error !== undefined) throw call.error;
      const answer = call.respond ? await call.respond(argv, runOptions) : {};
      const stdout = answer.stdout ?? call.stdout ?? '';
      const stderr = answer.stderr ?? call.stderr ?? '';
      const exitCode = answer.exitCode ?? call.exitCode ?? 0;
      if (!(runOptions.okExitCodes ?? [0]).includes(exitCode)) {
        throw new CommandFailedError('COMMAND_FAILED', argv, exitCode, tailOf(stderr || stdout));
      }
      return { argv, exitCode, stdout, stderr, durationMs: 0 };
    },
    expect(...more) {
      for (const call of more) entries.push({ call, left: call.times ?? 1 });
      return runner;
    },
    assertDone() {
      const unused = entries.filter((e) => Number.isFinite(e.left) && e.left > 0);
      if (unused.length > 0) {
        throw new Error(`FakeRunner: expected calls not made: ${unused.map((e) => describe(e.call.argv)).join(', ')}`);
      }
    },
    commandLines() {
      return calls.map((c) => c.argv.join(' '));
    },
  };
  return runner;
}
