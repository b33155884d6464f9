/**
 * The operator's extra CA certificates (`ca_file`), read when a download needs them, so a bad
 * path fails the step that needs it with the path named instead of stopping the agent.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { AgentError } from '../errors.ts';

/** The PEM text of `path`, or undefined when no path is configured. */
export async function readCaFile(path: string | undefined): Promise<string | undefined> {
  if (!path) return undefined;
  return readFile(path, 'utf8').catch((err: unknown) => {
    throw new AgentError('CONFIG_INVALID', `Cannot read ca_file ${path}: ${(err as Error).message}`, { cause: err });
  });
}
