/**
 * Running hashes of downloads, on this thread or on a worker thread. On this 2-core class of
 * machine the main thread of an image write decrypts TLS, parses HTTP, hashes and issues the
 * writes one after the other; a worker hashes beside it, fed through a ring of slots in shared
 * memory (one copy per byte, no allocation per slot, bounded memory: the ring is the whole
 * queue). The
 * worker's code is a short CommonJS string evaluated by the worker, so it runs the same from
 * src/ under tsx and from the one-file bundle. Figures in docs/benchmarks.md.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { AgentError } from '../errors.ts';

/** Slots of the ring a worker hash is fed through, and the size of each. */
export const WORKER_BUFFERS = 4;
export const WORKER_BUFFER_BYTES = 256 * 1024;

/**
 * When a download is hashed on a worker thread: only from `minBytes` on (disk images, not
 * manifests or configs: a thread costs ~30 ms to start and ~9 MiB while it runs), and only with
 * at least `minCores` cores. With fewer, the thread has no core of its own: measured on 2 cores
 * it added CPU per GiB and peak RSS and gained no time (docs/benchmarks.md). Tests lower them.
 */
export const hashThreadPolicy = { minBytes: 32 * 1024 * 1024, minCores: 3 };

/** Whether a download of `size` bytes (undefined: unknown) is hashed on a worker thread. */
export function wantsHashThread(size: number | undefined): boolean {
  return availableParallelism() >= hashThreadPolicy.minCores && (size ?? Infinity) >= hashThreadPolicy.minBytes;
}

export interface StreamHash {
  readonly algorithm: string;
  /**
   * Adds bytes (copied or hashed before this returns, so the caller may reuse `chunk`). Returns
   * a promise when the worker is a whole pool behind: await it before the next call.
   */
  update(chunk: Uint8Array): Promise<void> | undefined;
  /** Hex digest of the bytes so far; the hash goes on. */
  peek(): Promise<string>;
  /** Hex digest of all the bytes; the hash is finished (and its thread ended). */
  digest(): Promise<string>;
  /** Ends the hash and its thread without a digest (safe to call more than once). */
  close(): void;
}

class LocalHash implements StreamHash {
  readonly algorithm: string;
  readonly #hash: Hash;

  constructor(algorithm: string) {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): undefined {
    this.#hash.update(chunk);
    return undefined;
  }

  peek(): Promise<string> {
    return Promise.resolve(this.#hash.copy().digest('hex'));
  }

  digest(): Promise<string> {
    return Promise.resolve(this.#hash.digest('hex'));
  }

  close(): void {}
}

// The worker: a ring of slots in shared memory. ctrl[0] counts slots published by the main
// thread, ctrl[1] slots the worker is done with; each slot has a length and an op (0: bytes,
// 1: bytes then the digest so far, 2: bytes then the final digest). No allocation per slot.
const WORKER_SOURCE = `'use strict';
const { parentPort, workerData: w } = require('node:worker_threads');
const hash = require('node:crypto').createHash(w.algorithm);
const ctrl = new Int32Array(w.ctrl);
const lengths = new Int32Array(w.lengths);
const ops = new Int32Array(w.ops);
const data = new Uint8Array(w.data);
for (let next = 0; ;) {
  while (Atomics.load(ctrl, 0) === next) Atomics.wait(ctrl, 0, next);
  const slot = next % w.slots;
  const op = ops[slot];
  if (lengths[slot] > 0) hash.update(data.subarray(slot * w.slotBytes, slot * w.slotBytes + lengths[slot]));
  if (op === 1) parentPort.postMessage(hash.copy().digest('hex'));
  if (op === 2) parentPort.postMessage(hash.digest('hex'));
  next = (next + 1) | 0;
  Atomics.store(ctrl, 1, next);
  Atomics.notify(ctrl, 1);
  if (op === 2) break;
}
`;

let running = 0;

// Atomics.waitAsync is in Node 20 (V8) but not in this project's TypeScript lib.
const waitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

/** Hashing threads started and not ended yet (tests and the bench read it). */
export function runningHashThreads(): number {
  return running;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

class WorkerHash implements StreamHash {
  readonly algorithm: string;
  readonly #worker: Worker;
  readonly #ctrl = new Int32Array(new SharedArrayBuffer(8));
  readonly #lengths = new Int32Array(new SharedArrayBuffer(4 * WORKER_BUFFERS));
  readonly #ops = new Int32Array(new SharedArrayBuffer(4 * WORKER_BUFFERS));
  readonly #data = Buffer.from(new SharedArrayBuffer(WORKER_BUFFERS * WORKER_BUFFER_BYTES));
  /** Slots published (mirrors ctrl[0]); the slot being filled is `#published % WORKER_BUFFERS`. */
  #published = 0;
  #filled = 0;
  readonly #answers: Waiter<string>[] = [];
  readonly #failed: Promise<never>;
  #failure: unknown;
  #closed = false;
  #waiting = 0;

  constructor(algorithm: string) {
    this.algorithm = algorithm;
    const workerData = {
      algorithm, slots: WORKER_BUFFERS, slotBytes: WORKER_BUFFER_BYTES,
      ctrl: this.#ctrl.buffer, lengths: this.#lengths.buffer, ops: this.#ops.buffer, data: this.#data.buffer,
    };
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData, stdout: false, stderr: false });
    running++;
    this.#worker.unref();
    let fail: (err: unknown) => void = () => {};
    this.#failed = new Promise<never>((_resolve, reject) => { fail = reject; });
    this.#failed.catch(() => undefined);
    const onFailure = (err: unknown) => {
      if (this.#failure !== undefined) return;
      this.#failure = new AgentError('INTERNAL', `The ${algorithm} hashing thread failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      fail(this.#failure);
      for (const waiter of this.#answers.splice(0)) waiter.reject(this.#failure);
      this.close();
    };
    this.#worker.on('message', (hex: string) => this.#answers.shift()?.resolve(hex));
    this.#worker.on('error', onFailure);
    this.#worker.on('exit', (code) => {
      if (!this.#closed) onFailure(new Error(`it exited (${code})`));
    });
  }

  // While something waits for the worker, its handle keeps the process alive; otherwise not.
  async #whileWaiting<T>(promise: Promise<T>): Promise<T> {
    if (this.#waiting++ === 0) this.#worker.ref();
    try {
      return await Promise.race([promise, this.#failed]);
    } finally {
      if (--this.#waiting === 0) this.#worker.unref();
    }
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) throw new AgentError('INTERNAL', `The ${this.algorithm} hash was already finished`);
  }

  get #free(): boolean {
    return this.#published - Atomics.load(this.#ctrl, 1) < WORKER_BUFFERS;
  }

  #publish(op: number): void {
    const slot = this.#published % WORKER_BUFFERS;
    this.#lengths[slot] = this.#filled;
    this.#ops[slot] = op;
    this.#published = (this.#published + 1) | 0;
    this.#filled = 0;
    Atomics.store(this.#ctrl, 0, this.#published);
    Atomics.notify(this.#ctrl, 0);
  }

  async #slotFree(): Promise<void> {
    while (!this.#free && !this.#closed) {
      const consumed = Atomics.load(this.#ctrl, 1);
      if (this.#published - consumed < WORKER_BUFFERS) break;
      const wait = waitAsync(this.#ctrl, 1, consumed);
      if (wait.async) await this.#whileWaiting(wait.value as Promise<string>);
    }
  }

  update(chunk: Uint8Array): Promise<void> | undefined {
    this.#check();
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#filled === 0 && !this.#free) return this.#continueLater(chunk.subarray(offset));
      const slot = this.#published % WORKER_BUFFERS;
      const n = Math.min(chunk.length - offset, WORKER_BUFFER_BYTES - this.#filled);
      this.#data.set(chunk.subarray(offset, offset + n), slot * WORKER_BUFFER_BYTES + this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === WORKER_BUFFER_BYTES) this.#publish(0);
    }
    return undefined;
  }

  // The rest of a chunk once the worker freed a slot. A hash closed meanwhile (the download
  // failed) drops it; a failed thread rejects, also when nobody awaits (the digest fails anyway).
  #continueLater(rest: Uint8Array): Promise<void> {
    const later = this.#slotFree().then(() => (this.#closed && this.#failure === undefined ? undefined : this.update(rest)));
    later.catch(() => undefined);
    return later;
  }

  // The slot being filled (possibly empty) goes out with the op; the answer comes in order.
  async #ask(op: 1 | 2): Promise<string> {
    this.#check();
    if (this.#filled === 0) {
      await this.#slotFree();
      this.#check();
    }
    const answer = new Promise<string>((resolve, reject) => this.#answers.push({ resolve, reject }));
    this.#publish(op);
    return this.#whileWaiting(answer);
  }

  peek(): Promise<string> {
    return this.#ask(1);
  }

  async digest(): Promise<string> {
    try {
      return await this.#ask(2);
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    running--;
    // Wakes a wait for a free slot: it sees the hash closed and gives up.
    Atomics.notify(this.#ctrl, 1);
    void this.#worker.terminate().catch(() => undefined);
  }
}

/** A running hash (any algorithm `node:crypto` knows), on a worker thread when `offThread` (see `wantsHashThread`). */
export function createStreamHash(algorithm: string, offThread: boolean): StreamHash {
  return offThread ? new WorkerHash(algorithm) : new LocalHash(algorithm);
}
