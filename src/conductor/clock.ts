/**
 * Time as the conductor code sees it: injected so tests drive timers and back-off without
 * sleeping for real.
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises';
import { AgentError } from '../errors.ts';

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, ms);
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

// A real sleep that ends early with CANCELLED when the signal aborts.
export const systemSleep: Sleep = async (ms, signal) => {
  try {
    await delay(ms, undefined, { signal });
  } catch (err) {
    throw cancelled(err);
  }
};

export function cancelled(cause?: unknown): AgentError {
  return new AgentError('CANCELLED', 'The operation was cancelled', { cause });
}

/** Throws CANCELLED when the signal has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled(signal.reason);
}
