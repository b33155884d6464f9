/**
 * Running external programs.
 * @example
 * const runner = createExecaRunner();
 * const { stdout } = await runner.run('lsblk', ['-bia', '--json'], { signal });
 * @module
 */
export { createExecaRunner, redactSecrets, tailOf } from './runner.ts';
export type { CommandRunner, RunOptions, RunResult } from './runner.ts';
