/**
 * Deploy and clean steps: what `get_deploy_steps` advertises and what `execute_deploy_step`
 * dispatches to by step name (IPA's hardware managers).
 * @module
 */
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import type { CommandContext } from './types.ts';

export type StepInterface = 'deploy' | 'clean';

// The conductor stores these and sends them back as deploy_version/clean_version; a change
// between the two means the ramdisk changed under a running deploy (IPA `check_versions`).
export const HARDWARE_MANAGER_NAME = 'BootcAgentHardwareManager';
export const HARDWARE_MANAGER_VERSIONS: Readonly<Record<string, string>> = Object.freeze({ bootc_agent_hardware_manager: '1.0' });

/** The node dict the conductor sends (`node.as_dict(secure=True)`): lenient, ours to read only. */
export const NodeInfo = z.looseObject({
  uuid: z.string().optional(),
  properties: z.record(z.string(), z.unknown()).nullish(),
  instance_info: z.record(z.string(), z.unknown()).nullish(),
  driver_internal_info: z.record(z.string(), z.unknown()).nullish(),
});
export type NodeInfo = z.infer<typeof NodeInfo>;

export interface StepContext extends CommandContext {
  node: NodeInfo;
  ports: unknown[];
}

export interface StepDefinition {
  interface: StepInterface;
  step: string;
  priority: number;
  reboot_requested: boolean;
  abortable?: boolean;
  argsinfo?: Record<string, { description: string; required: boolean }>;
  run(args: Record<string, unknown>, ctx: StepContext): Promise<unknown>;
}

export class StepRegistry {
  readonly #steps = new Map<string, StepDefinition>();

  register(steps: readonly StepDefinition[]): void {
    for (const step of steps) {
      const key = `${step.interface}.${step.step}`;
      if (this.#steps.has(key)) throw new Error(`step ${key} registered twice`);
      this.#steps.set(key, step);
    }
  }

  /** The `get_*_steps` reply: steps keyed by manager name plus the version map. */
  describe(iface: StepInterface): Record<string, unknown> {
    const steps = [...this.#steps.values()]
      .filter((s) => s.interface === iface)
      .map((s) => ({
        step: s.step,
        priority: s.priority,
        interface: s.interface,
        reboot_requested: s.reboot_requested,
        abortable: s.abortable ?? false,
        ...(s.argsinfo ? { argsinfo: s.argsinfo } : {}),
      }));
    return { [`${iface}_steps`]: { [HARDWARE_MANAGER_NAME]: steps }, hardware_manager_version: { ...HARDWARE_MANAGER_VERSIONS } };
  }

  get(iface: StepInterface, name: string): StepDefinition {
    const step = this.#steps.get(`${iface}.${name}`);
    if (!step) {
      throw new AgentError('STEP_NOT_FOUND', `No HardwareManager found to handle method: ${iface} step ${name} is not provided by this agent`, {
        details: { interface: iface, step: name, available: [...this.#steps.values()].filter((s) => s.interface === iface).map((s) => s.step) },
      });
    }
    return step;
  }
}

// A version map that differs from ours means the conductor planned with another ramdisk.
export function checkVersions(sent: Record<string, unknown> | null | undefined): void {
  if (!sent || Object.keys(sent).length === 0) return;
  const ours = HARDWARE_MANAGER_VERSIONS;
  const same = Object.keys(ours).length === Object.keys(sent).length
    && Object.entries(ours).every(([k, v]) => String(sent[k]) === v);
  if (!same) {
    throw new AgentError('VERSION_MISMATCH', `Hardware managers version mismatch, reloading agent with manager versions ${JSON.stringify(ours)}`, {
      details: { agent_version: ours, conductor_version: sent },
    });
  }
}
