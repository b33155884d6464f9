/**
 * Whether the programs a test needs are installed: the tests that need one skip with a printed
 * reason instead of failing.
 * @module
 */
import { execFileSync } from 'node:child_process';

/** Whether `name` is a command on PATH (`command -v`; the name is an argument, never shell code). */
export function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The first of `tools` that is not on PATH, as a skip reason ("needs X on PATH"), or undefined. */
export function toolMissing(...tools: string[]): string | undefined {
  const missing = tools.find((t) => !hasCommand(t));
  return missing ? `needs ${missing} on PATH` : undefined;
}

/** Runs a command and returns its stdout; throws on a non-zero exit (`input` goes to its stdin). */
export function sh(file: string, args: readonly string[], input?: string): string {
  return execFileSync(file, args, { encoding: 'utf8', input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
}

/** Exit status and stdout of a command that may fail (blkid exits 2 when it finds nothing). */
export function probe(file: string, args: readonly string[]): { status: number; stdout: string } {
  try {
    return { status: 0, stdout: sh(file, args) };
  } catch (err) {
    const e = err as { status?: number; stdout?: string };
    return { status: e.status ?? -1, stdout: e.stdout ?? '' };
  }
}

/** Runs a suite's clean-ups last-first; one that fails is logged and the others still run. */
export async function runCleanups(cleanups: (() => Promise<unknown> | unknown)[]): Promise<void> {
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (err) {
      console.error('cleanup failed:', err);
    }
  }
}
