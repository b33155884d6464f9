/**
 * The conductor's side of a bootc deploy, in miniature: on top of the fake Ironic API
 * (test/helpers/fake-conductor.ts, which handles lookup and heartbeats), it does what
 * Ironic's `BootcAgentDeploy` does once the agent heartbeats — `deploy.get_deploy_steps`,
 * the "freshly booted" command list, `deploy.execute_deploy_step` with
 * `execute_bootc_install` and its three args, then polls `GET /v1/commands/` until the
 * last command finished, matching the result by interface + step like `agent_base` does.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeConductor } from '../../test/helpers/fake-conductor.ts';

type Json = Record<string, any>;

export interface BootcDeployRequest {
  imageSource: string;
  /** gzip+base64 ISO, a URL, or null. */
  configdrive: string | null;
  /** base64 of the docker `auth` value, as Ironic sends it, or null. */
  ociPullSecret: string | null;
  instanceInfo: Record<string, unknown>;
}

export type DeployEvent =
  | { kind: 'steps'; steps: string[] }
  | { kind: 'started'; id: string }
  | { kind: 'progress'; progress: Json }
  | { kind: 'heartbeat'; message: string | undefined };

export interface DriveOptions {
  conductor: FakeConductor;
  request: BootcDeployRequest;
  onEvent?: (event: DeployEvent) => void;
  signal?: AbortSignal;
  /** How often the command list is polled (the real conductor polls on each heartbeat). */
  pollMs?: number;
  timeoutMs?: number;
}

export interface DriveResult {
  command: Json;
  /** Every distinct progress report seen while RUNNING. */
  progress: Json[];
  seconds: number;
}

export class DeployFailed extends Error {
  constructor(readonly command: Json) {
    const error = command.command_error as Json | null;
    super(`Deploy step deploy.execute_bootc_install failed: ${error?.details ?? error?.message ?? JSON.stringify(command)}`);
  }
}

async function call(conductor: FakeConductor, path: string, body?: unknown, query?: Record<string, string>): Promise<Json> {
  const res = await conductor.callAgent({ path, ...(body === undefined ? {} : { body }), ...(query ? { query } : {}) });
  if (res.status >= 400) throw new Error(`agent answered HTTP ${res.status} to ${path}: ${(res.body as Json | undefined)?.faultstring ?? ''}`);
  return res.body as Json;
}

export async function driveBootcDeploy(options: DriveOptions): Promise<DriveResult> {
  const { conductor, request } = options;
  const emit = options.onEvent ?? (() => undefined);
  const deadline = Date.now() + (options.timeoutMs ?? 30 * 60_000);
  const started = Date.now();
  const check = () => {
    options.signal?.throwIfAborted();
    if (Date.now() > deadline) throw new Error('the deploy did not finish in time');
  };
  while (!conductor.agentUrl) {
    check();
    await sleep(100);
  }
  const node = {
    uuid: conductor.nodeUuid,
    properties: { cpu_arch: 'x86_64' },
    instance_info: { image_source: request.imageSource, ...request.instanceInfo },
    driver_internal_info: {},
  };
  const ports = [{ uuid: randomUUID(), address: conductor.macs[0], pxe_enabled: true }];

  const stepsReply = await call(conductor, '/v1/commands/', { name: 'deploy.get_deploy_steps', params: { node, ports } }, { wait: 'true' });
  const managers = stepsReply.command_result.deploy_steps as Record<string, Json[]>;
  const steps = Object.values(managers).flat().map((s) => String(s.step));
  emit({ kind: 'steps', steps });
  if (!steps.includes('execute_bootc_install')) throw new Error(`the agent does not offer execute_bootc_install (steps: ${steps.join(', ')})`);
  const deployVersion = stepsReply.command_result.hardware_manager_version as Json;
  await call(conductor, '/v1/commands/'); // the conductor's "freshly booted" check

  const step = {
    interface: 'deploy',
    step: 'execute_bootc_install',
    args: { image_source: request.imageSource, configdrive: request.configdrive, oci_pull_secret: request.ociPullSecret },
  };
  const startedCommand = await call(conductor, '/v1/commands/', {
    name: 'deploy.execute_deploy_step',
    params: { step, node, ports, deploy_version: deployVersion },
  }, { wait: 'false' });
  emit({ kind: 'started', id: String(startedCommand.id) });

  const progress: Json[] = [];
  let lastProgress = '';
  let heartbeatsSeen = conductor.heartbeats.length;
  for (;;) {
    check();
    for (const hb of conductor.heartbeats.slice(heartbeatsSeen)) emit({ kind: 'heartbeat', message: (hb.body as Json | undefined)?.agent_status_message });
    heartbeatsSeen = conductor.heartbeats.length;
    const { commands } = await call(conductor, '/v1/commands/') as { commands: Json[] };
    const last = commands[commands.length - 1];
    if (!last || last.command_name !== 'execute_deploy_step') throw new Error(`unexpected last command ${JSON.stringify(last)}`);
    if (last.command_status === 'RUNNING') {
      const p = last.command_result?.progress as Json | undefined;
      const key = p ? JSON.stringify({ ...p, at: undefined }) : '';
      if (p && key !== lastProgress) {
        lastProgress = key;
        progress.push(p);
        emit({ kind: 'progress', progress: p });
      }
      await sleep(options.pollMs ?? 250);
      continue;
    }
    if (last.command_status !== 'SUCCEEDED') throw new DeployFailed(last);
    const done = last.command_result?.deploy_step as Json | undefined;
    if (done?.interface !== 'deploy' || done.step !== 'execute_bootc_install') throw new Error(`the finished command is another step: ${JSON.stringify(done)}`);
    return { command: last, progress, seconds: (Date.now() - started) / 1000 };
  }
}
