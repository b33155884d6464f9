/**
 * The `deploy` and `clean` extensions: list steps and execute one step by name.
 * @module
 */
import { z } from 'zod';
import { defineCommand, type CommandDefinition } from './types.ts';
import { checkVersions, NodeInfo, type StepInterface, type StepRegistry } from './steps.ts';

const Ports = z.array(z.unknown()).nullish().transform((p) => p ?? []);
const VersionMap = z.record(z.string(), z.unknown()).nullish();
const Step = z.looseObject({
  interface: z.string(),
  step: z.string().min(1),
  args: z.record(z.string(), z.unknown()).nullish(),
  priority: z.number().optional(),
});

const ExecuteParams = {
  deploy: z.object({ step: Step, node: NodeInfo, ports: Ports, deploy_version: VersionMap }).strict(),
  clean: z.object({ step: Step, node: NodeInfo, ports: Ports, clean_version: VersionMap }).strict(),
};

// One pair of commands per step interface, shaped exactly like IPA's extensions.
function stepCommands(registry: StepRegistry, iface: StepInterface): CommandDefinition[] {
  const getSteps = defineCommand({
    name: `${iface}.get_${iface}_steps`,
    mode: 'sync',
    params: z.object({ node: NodeInfo, ports: Ports }).strict(),
    run: async () => registry.describe(iface),
  });
  const executeStep = defineCommand({
    name: `${iface}.execute_${iface}_step`,
    mode: 'async',
    params: ExecuteParams[iface] as z.ZodType<z.output<typeof ExecuteParams.deploy> & z.output<typeof ExecuteParams.clean>>,
    run: async (params, ctx) => {
      checkVersions(iface === 'deploy' ? params.deploy_version : params.clean_version);
      const step = params.step;
      const definition = registry.get(iface, step.step);
      ctx.journal?.record({ step: { interface: iface, step: step.step } });
      ctx.signal.throwIfAborted();
      const result = await definition.run(step.args ?? {}, { ...ctx, node: params.node, ports: params.ports });
      // IPA echoes the step; the conductor matches it by interface + step. Arguments may hold
      // secrets (pull secrets, config drives), so they are not echoed back.
      return { [`${iface}_result`]: result ?? null, [`${iface}_step`]: { interface: step.interface, step: step.step, priority: step.priority ?? 0, args: {} } };
    },
  });
  return [getSteps, executeStep];
}

export function createStepCommands(registry: StepRegistry): CommandDefinition[] {
  return [...stepCommands(registry, 'deploy'), ...stepCommands(registry, 'clean')];
}
