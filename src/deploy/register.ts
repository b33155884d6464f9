/**
 * What the registrations of the disk-writing deploy steps share: their dependencies may be
 * built on first use (an agent that never deploys never loads the OCI client, the step's code or
 * the config-drive writer: less idle memory and a faster start), and the `configdrive` argument
 * both steps take.
 * @module
 */
import type { StepDefinition } from '../commands/index.ts';

/** The dependencies themselves, or a function that builds them when a step first runs. */
export type DepsSource<D> = D | (() => Promise<D>);

export function resolveDeps<D>(source: DepsSource<D>): Promise<D> {
  return typeof source === 'function' ? (source as () => Promise<D>)() : Promise.resolve(source);
}

/** The `configdrive` argument of `execute_bootc_install` and `write_image`. */
export const CONFIGDRIVE_ARG: NonNullable<StepDefinition['argsinfo']>[string] = {
  description: 'gzip+base64 ISO 9660 config drive, or an http(s) URL to one',
  required: false,
};
