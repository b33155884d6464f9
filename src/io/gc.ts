/**
 * Keeping a long stream's footprint flat. Every TLS read hands over a fresh 16 KiB buffer; they
 * die at once, but their memory (outside the JS heap) is only returned when a scavenge collects
 * their small JS wrappers, and so little JS is allocated per chunk that V8 lets tens of MB of
 * dead buffers pile up between scavenges. A minor GC every few MB of stream is cheap and keeps
 * that at a few MB. Uses V8's `gc` through a fresh context (`--expose-gc` set at run time
 * applies to new contexts only); a no-op when unavailable.
 * @module
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let gc: GcFunction | null | undefined;

function load(): GcFunction | null {
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as GcFunction) : null;
  } catch {
    return null;
  }
}

/** A scavenge (young generation only), if this runtime lets us ask for one. */
export function minorGc(): void {
  if (gc === undefined) gc = load();
  try {
    gc?.({ type: 'minor' });
  } catch {
    gc = null;
  }
}

/** Calls `minorGc` once per `every` bytes reported to the returned function. */
export function gcEvery(every: number): (bytes: number) => void {
  let next = every;
  return (total: number) => {
    if (total < next) return;
    next = total + every;
    minorGc();
  };
}
