/**
 * Waiting between attempts (a disk to appear, the kernel to take a partition table), with the
 * sleep injectable so tests do not wait.
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises';
import { AgentError } from '../errors.ts';

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const defaultSleep: Sleep = async (ms, signal) => {
  await delay(ms, undefined, { signal });
};

/** `sleep(ms)`; an abort becomes CANCELLED ("`what` was cancelled"), so callers see one code. */
export async function pause(sleep: Sleep, ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  try {
    await sleep(ms, signal);
  } catch (err) {
    if (signal?.aborted || (err instanceof Error && err.name === 'AbortError')) {
      throw new AgentError('CANCELLED', `${what} was cancelled`, { cause: signal?.reason ?? err });
    }
    throw err;
  }
}
