/**
 * The skeleton of a disk-writing deploy step (`execute_bootc_install`, `write_image`): phases
 * with progress reports and timings, the one error that names the phase a step failed in, and
 * the wipe policy — a disk the step has written to is wiped when the step fails, so no half
 * installed OS stays behind. The phase, the disk, whether it was written and the step's
 * containers also go to the command's journal, for a restart after a kill (src/commands/journal.ts).
 * @module
 */
import type { CommandContext } from '../commands/index.ts';
import { wipeDisk } from '../disk/index.ts';
import { AgentError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';

export interface PhasedStepOptions<P extends string> {
  /** How a failure's message starts: `Deploy step execute_bootc_install`, `write_image`. */
  label: string;
  /** The step's name in its log records. */
  step: string;
  firstPhase: P;
  ctx: Pick<CommandContext, 'log' | 'signal' | 'reportProgress' | 'journal'>;
  runner: CommandRunner;
}

/** One run of a step, handed to its body. */
export class StepRun<P extends string> {
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** What the failure path did, reported in the error's details (`disk: 'wiped'`, …). */
  readonly cleanup: Record<string, unknown> = {};
  #phase: P;
  #phaseStarted = performance.now();
  readonly #started = performance.now();
  readonly #timings: Record<string, number> = {};
  readonly #report: CommandContext['reportProgress'];
  readonly #journal: CommandContext['journal'];
  #device: string | undefined;
  #written = false;

  constructor(options: PhasedStepOptions<P>) {
    this.log = options.ctx.log.child({ step: options.step });
    this.signal = options.ctx.signal;
    this.#phase = options.firstPhase;
    this.#report = options.ctx.reportProgress;
    this.#journal = options.ctx.journal;
    this.#journal?.record({ phase: this.#phase });
  }

  get phase(): P {
    return this.#phase;
  }

  /** The disk the step chose (named in a failure's details). */
  get device(): string | undefined {
    return this.#device;
  }

  /** Ends the current phase (its time goes to `timings`) and reports the next one. */
  enter(next: P, message: string, extra: Record<string, unknown> = {}): void {
    this.#timings[`${this.#phase}_ms`] = Math.round(performance.now() - this.#phaseStarted);
    this.#phase = next;
    this.#phaseStarted = performance.now();
    this.#journal?.record({ phase: next });
    this.report(message, extra);
  }

  /** A progress report within the current phase. */
  report(message: string, extra: Record<string, unknown> = {}): void {
    this.#report({ phase: this.#phase, message, ...extra });
  }

  useDisk(device: string): void {
    this.#device = device;
    this.#journal?.record({ device });
  }

  /**
   * From now on the disk holds what the step wrote: a failure wipes it, and so does the next
   * start of an agent killed from here on (the journal has it when this returns).
   */
  markWritten(): void {
    this.#written = true;
    this.#journal?.record({ written: true });
  }

  /**
   * Names the containers the step is about to start, before it starts them: an agent killed
   * while one runs removes it by name at its next start.
   */
  recordContainers(...names: string[]): void {
    this.#journal?.record({ containers: names });
  }

  /** A scratch area on the disk: its directory, and the podman options of the store the containers live in there. */
  recordScratch(dir: string, storeArgs: readonly string[]): void {
    this.#journal?.record({ scratch_dir: dir, store_args: [...storeArgs] });
  }

  /** Milliseconds per finished phase, and the total. */
  timings(): Record<string, number> {
    return { ...this.#timings, total_ms: Math.round(performance.now() - this.#started) };
  }

  /** Wipes the disk when the step wrote to it; records what happened in `cleanup`. */
  async wipeIfWritten(runner: CommandRunner): Promise<void> {
    if (this.#device && this.#written) this.cleanup.disk = await wipeDisk(runner, this.#device, { log: this.log });
  }
}

/**
 * Runs `body` as one step. On failure: the first error is logged before anything else (a
 * cleanup failure can never hide it), `onFailure` undoes what only the step knows about, the
 * disk is wiped if it was written, and the error is rethrown with its code, naming the phase.
 */
export async function runPhasedStep<P extends string, T>(
  options: PhasedStepOptions<P>,
  body: (run: StepRun<P>) => Promise<T>,
  onFailure?: (run: StepRun<P>) => Promise<void>,
): Promise<T> {
  const run = new StepRun(options);
  try {
    return await body(run);
  } catch (err) {
    const failure = toAgentError(err);
    const { phase } = run;
    run.log.error({ err: failure, phase, details: failure.details }, `${options.label} failed in phase ${phase}`);
    await onFailure?.(run);
    await run.wipeIfWritten(options.runner);
    throw new AgentError(failure.code, `${options.label} failed in phase ${phase}: ${failure.message}`, {
      cause: failure,
      details: {
        ...failure.details, phase, ...(run.device ? { device: run.device } : {}),
        ...(Object.keys(run.cleanup).length > 0 ? { cleanup: run.cleanup } : {}),
      },
    });
  }
}
