/**
 * The state one image write shares between its stages: bytes downloaded and written, whether
 * the source was read to its end, whether the target was touched (a failure from then on wipes
 * it), where the time went, and the progress reports.
 * @module
 */
import { AgentError } from '../errors.ts';
import { PhaseClock } from './timing.ts';
import type { WriteProgress } from './types.ts';

/** Least time between two progress reports (phase changes and the end are always reported). */
export const PROGRESS_INTERVAL_MS = 250;

export class WriteJob {
  readonly clock = new PhaseClock();
  /** Bytes received from the source. */
  downloaded = 0;
  /** Bytes on the target (or in the temporary qcow2 copy). */
  written = 0;
  /** The source was read to its end. */
  complete = false;
  /** Something was written to the target: a failure from now on wipes it. */
  touched = false;
  #phase: WriteProgress['phase'] = 'download';
  #lastReport = 0;
  readonly #onProgress: ((progress: WriteProgress) => void) | undefined;
  readonly #total: number | undefined;

  /** `total`: the download size, when the source announced it. */
  constructor(onProgress: ((progress: WriteProgress) => void) | undefined, total: number | undefined) {
    this.#onProgress = onProgress;
    this.#total = total;
  }

  /** Reports progress, at most every PROGRESS_INTERVAL_MS unless `force`d. */
  report(force = false): void {
    const now = performance.now();
    if (!this.#onProgress || (!force && now - this.#lastReport < PROGRESS_INTERVAL_MS)) return;
    this.#lastReport = now;
    this.#onProgress({ phase: this.#phase, bytesDownloaded: this.downloaded, bytesTotal: this.#total, bytesWritten: this.written });
  }

  enter(phase: WriteProgress['phase']): void {
    this.#phase = phase;
    this.report(true);
  }

  /** For the writers: how far the target is written. */
  readonly onWritten = (bytes: number): void => {
    this.written = bytes;
    this.report();
  };

  /** A decompressor that stops early must not pass for a whole image. */
  checkComplete(): void {
    if (!this.complete) throw new AgentError('IMAGE_WRITE_FAILED', 'The decompressed image ended before the download did');
  }
}
