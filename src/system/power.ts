/**
 * Powering the machine off or rebooting it. Injected, so tests never power off the host.
 * @module
 */
import { writeFile } from 'node:fs/promises';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';

export interface PowerController {
  /** Flushes every filesystem and block device buffer to disk. */
  sync(signal?: AbortSignal): Promise<void>;
  powerOff(): Promise<void>;
  reboot(): Promise<void>;
}

// A ramdisk has nothing to shut down cleanly: force the action, and if the init system is
// missing or refuses, ask the kernel directly through magic SysRq ('o' off, 'b' reboot).
export function createSystemPowerController(runner: CommandRunner, log: Logger, sysrqPath = '/proc/sysrq-trigger'): PowerController {
  const act = async (argv: [string, ...string[]], sysrq: 'o' | 'b') => {
    try {
      await runner.run(argv[0], argv.slice(1), { timeoutMs: 30_000 });
    } catch (err) {
      log.warn({ err }, `${argv.join(' ')} failed; falling back to SysRq`);
      await writeFile(sysrqPath, sysrq);
    }
  };
  return {
    sync: async (signal) => { await runner.run('sync', [], { signal, timeoutMs: 600_000 }); },
    powerOff: () => act(['poweroff', '-f'], 'o'),
    reboot: () => act(['reboot', '-f'], 'b'),
  };
}
