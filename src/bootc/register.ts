/**
 * What the agent registers for `execute_bootc_install`: the step's description, and a `run`
 * that loads the step's code (./step.ts) and its dependencies on first use.
 * @module
 */
import type { StepDefinition } from '../commands/index.ts';
import { CONFIGDRIVE_ARG, resolveDeps, type DepsSource } from '../deploy/register.ts';
import type { BootcStepDeps } from './deps.ts';

export function createBootcStep(deps: DepsSource<BootcStepDeps>): StepDefinition {
  return {
    interface: 'deploy',
    step: 'execute_bootc_install',
    // The conductor's out-of-band step of the same name shadows this one (ipa-protocol.md §1.5).
    priority: 0,
    reboot_requested: false,
    argsinfo: {
      image_source: { description: 'oci://host[:port]/repository[:tag|@digest] of a bootable container image', required: true },
      configdrive: CONFIGDRIVE_ARG,
      oci_pull_secret: { description: 'registry credentials (base64 of a docker auth value, and the other shapes docs/bootc-step.md lists)', required: false },
    },
    run: async (args, ctx) => {
      const [{ runBootcInstall }, resolved] = await Promise.all([import('./step.ts'), resolveDeps(deps)]);
      return runBootcInstall(resolved, args, ctx);
    },
  };
}
