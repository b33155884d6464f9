/**
 * What the agent registers for whole-disk images: the `write_image` deploy step and the
 * `standby.prepare_image` / `standby.cache_image` commands. Their code (./step.ts and the write
 * path) and dependencies load when one first runs.
 * @module
 */
import { z } from 'zod';
import { defineCommand, type CommandContext, type CommandDefinition, type NodeInfo, type StepDefinition } from '../commands/index.ts';
import { CONFIGDRIVE_ARG, resolveDeps, type DepsSource } from '../deploy/register.ts';
import { AgentError } from '../errors.ts';
import type { WriteImageDeps } from './step.ts';

export type WriteImageDepsSource = DepsSource<WriteImageDeps>;

async function run(
  source: WriteImageDepsSource, name: string, imageInfo: unknown, configdrive: unknown, node: NodeInfo | undefined, ctx: CommandContext,
): Promise<Record<string, unknown>> {
  const [{ runWriteImage }, deps] = await Promise.all([import('./step.ts'), resolveDeps(source)]);
  return runWriteImage(deps, name, imageInfo, configdrive, node, ctx);
}

export function createWriteImageStep(deps: WriteImageDepsSource): StepDefinition {
  return {
    interface: 'deploy',
    step: 'write_image',
    // As in IPA: the conductor proxies it through its own out-of-band write_image step
    // (priority 80), so the in-band priority does not matter.
    priority: 0,
    reboot_requested: false,
    argsinfo: {
      image_info: { description: 'Ironic image_info: urls (http(s):// or oci://), os_hash_algo/os_hash_value, disk_format raw|qcow2, image_request_authorization, …', required: true },
      configdrive: CONFIGDRIVE_ARG,
    },
    run: (args, ctx) => run(deps, 'write_image', args['image_info'], args['configdrive'], ctx.node, ctx),
  };
}

/**
 * `standby.prepare_image` (same work as write_image, node from lookup) and `standby.cache_image`
 * (refused: this agent keeps no image cache). `getNode` gives the node from lookup.
 */
export function createStandbyImageCommands(deps: WriteImageDepsSource, getNode?: () => Promise<NodeInfo | undefined>): CommandDefinition[] {
  return [
    defineCommand({
      name: 'standby.prepare_image',
      mode: 'async',
      params: z.object({ image_info: z.record(z.string(), z.unknown()), configdrive: z.string().nullish() }).strict(),
      run: async (params, ctx) => {
        const resolved = typeof deps === 'function' ? undefined : deps;
        const node = await (getNode ?? resolved?.getNode)?.();
        return run(deps, 'prepare_image', params.image_info, params.configdrive, node, ctx);
      },
    }),
    defineCommand({
      name: 'standby.cache_image',
      mode: 'async',
      params: z.looseObject({}),
      run: async () => {
        throw new AgentError('UNSUPPORTED_COMMAND', 'standby.cache_image is not supported: this agent keeps no image cache and streams images straight to the disk (use the write_image deploy step or standby.prepare_image)', {
          details: { command: 'standby.cache_image' },
        });
      },
    }),
  ];
}
