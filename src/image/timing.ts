/**
 * Cheap attribution of where an image write spends its time: each stage adds the time it was
 * blocked or busy to one counter. Stages overlap (the socket keeps filling while the disk
 * writes), so the counters are "time this stage held the pipeline up", not a partition of the
 * wall time.
 * @module
 */

export type PhaseName = 'network' | 'hashing' | 'decompress' | 'disk' | 'convert' | 'sync';

export type Phases = Partial<Record<PhaseName, number>>;

export class PhaseClock {
  readonly #ms: Record<PhaseName, number> = { network: 0, hashing: 0, decompress: 0, disk: 0, convert: 0, sync: 0 };
  readonly #used = new Set<PhaseName>();

  add(phase: PhaseName, ms: number): void {
    this.#ms[phase] += ms;
    this.#used.add(phase);
  }

  get(phase: PhaseName): number {
    return this.#ms[phase];
  }

  /** Runs `fn` and charges its duration to `phase`. */
  async time<T>(phase: PhaseName, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      this.add(phase, performance.now() - started);
    }
  }

  /** Seconds per phase that was used, rounded to the millisecond. */
  seconds(): Phases {
    const out: Phases = {};
    for (const phase of this.#used) out[phase] = Math.round(this.#ms[phase]) / 1000;
    return out;
  }
}

/** Time waiting for decompressed output, minus the network/hashing time spent inside that wait. */
export async function* timedOutput(source: AsyncIterable<Buffer>, clock: PhaseClock): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const upstream = clock.get('network') + clock.get('hashing');
      const started = performance.now();
      const next = await iterator.next();
      clock.add('decompress', Math.max(0, performance.now() - started - (clock.get('network') + clock.get('hashing') - upstream)));
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await iterator.return?.();
  }
}
