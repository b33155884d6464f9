/**
 * What the `execute_bootc_install` step needs from the agent (and tests), in a module of its
 * own so that the step's parts can name it without importing the step.
 * @module
 */
import type { Config } from '../config/index.ts';
import type { ConfigDriveSettings } from '../deploy/configdrive.ts';
import type { DiskFinishDeps } from '../deploy/finish.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { OciClient } from '../oci/index.ts';
import type { ContainerStorageMode } from './admission.ts';

export interface BootcStepDeps extends DiskFinishDeps {
  runner: CommandRunner;
  config: Pick<Config, 'disable_bootc_deploy' | 'disk_wait_attempts' | 'disk_wait_delay' | 'include_loop_devices' | 'state_dir'> & ConfigDriveSettings & {
    /** The agent option of that name (src/config/options.ts); absent: auto. */
    container_storage?: ContainerStorageMode | undefined;
  };
  oci: OciClient;
  /** Test seams. */
  arch?: string;
  storagePath?: string;
  memAvailable?: () => Promise<number>;
  selinuxEnabled?: () => Promise<boolean>;
  retryDelayMs?: number;
}
