/**
 * Lookup retry delays: IPA's `tenacity.wait_random_exponential(min=lookup_interval, max=60)`,
 * plus the longer pause IPA takes while the node is locked (409: 5, 10, then 30 s).
 * @module
 */

export const MAX_LOOKUP_DELAY_MS = 60_000;
const LOCK_PAUSES_MS = [5_000, 10_000, 30_000] as const;

/**
 * Delay before retry number `attempt` (1 = after the first failure): uniform between the
 * starting interval and min(60 s, interval × 2^(attempt−1)). Random ("full") jitter keeps a
 * rack of ramdisks booted together from retrying in lock-step against the API.
 */
export function lookupDelayMs(attempt: number, intervalMs: number, random: () => number): number {
  const low = Math.min(intervalMs, MAX_LOOKUP_DELAY_MS);
  const high = Math.max(low, Math.min(MAX_LOOKUP_DELAY_MS, intervalMs * 2 ** Math.max(0, attempt - 1)));
  return low + (high - low) * random();
}

/** The next pause after a 409 (node locked), given the previous one (0 at first). */
export function nextLockPauseMs(previousMs: number): number {
  return LOCK_PAUSES_MS.find((p) => p > previousMs) ?? LOCK_PAUSES_MS[LOCK_PAUSES_MS.length - 1]!;
}
