/**
 * What the agent registers for `execute_bootc_install`: the step's description, and a `run`
 * that loads the step's code (src/deploy/bootc-step.ts, the OCI client, the config-drive
 * writer) on first use. An agent that never deploys never builds them: less idle memory and a
 * faster start (README "Benchmarks").
 * @module
 */
import type { StepDefinition } from '../commands/index.ts';
import type { BootcStepDeps } from './bootc-step.ts';

export const BOOTC_STEP_INFO: Omit<StepDefinition, 'run'> = {
  interface: 'deploy',
  step: 'execute_bootc_install',
  // The conductor's out-of-band step of the same name shadows this one (ipa-protocol.md §1.5).
  priority: 0,
  reboot_requested: false,
  argsinfo: {
    image_source: { description: 'oci://host[:port]/repository[:tag|@digest] of a bootable container image', required: true },
    configdrive: { description: 'gzip+base64 ISO 9660 config drive, or an http(s) URL to one', required: false },
    oci_pull_secret: { description: 'registry credentials (base64 of a docker auth value, and the other shapes the README lists)', required: false },
  },
};

/** The bootc step with its dependencies built when it first runs. */
export function createLazyBootcStep(deps: () => Promise<BootcStepDeps>): StepDefinition {
  return {
    ...BOOTC_STEP_INFO,
    run: async (args, ctx) => {
      const [{ runBootcInstall }, resolved] = await Promise.all([import('./bootc-step.ts'), deps()]);
      return runBootcInstall(resolved, args, ctx);
    },
  };
}
