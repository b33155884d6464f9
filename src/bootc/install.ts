/**
 * The bootc step's install phase: the files bind-mounted into the install container, the
 * `podman run … bootc install to-disk` argv, and bootc's output turned into progress and into
 * errors the conductor can act on.
 * @module
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError, isAgentError } from '../errors.ts';
import { formatName, type ImageInspection } from '../oci/index.ts';
import type { BootcFeatures } from './bootc-version.ts';
import { buildInstallArgs, INJECT_MOUNT, luksDropInToml, type ContainerStore } from './podman-args.ts';
import { bootcMilestone } from './progress.ts';
import type { BootcDeployRequest, Filesystem } from './request.ts';
import type { BootcStepDeps } from './deps.ts';

// Files bind-mounted read-only into the install container; nothing secret goes here.
export async function prepareInjectDir(stateDir: string, request: BootcDeployRequest): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(stateDir, 'inject-'));
  const keys = request.authorizedKeys;
  if (keys.length) await writeFile(join(dir, 'authorized_keys'), `${keys.join('\n')}\n`, { mode: 0o644 });
  if (luksDropIn(request)) await writeFile(join(dir, 'luks.toml'), luksDropInToml(), { mode: 0o644 });
  return dir;
}

function luksDropIn(request: BootcDeployRequest): boolean {
  return request.tpm2Luks && request.luksAllowInInstallConfig;
}

/** What bootc records as the update source: running by digest would make the digest the target, so the user's tag is followed. */
export function targetImgrefOf(request: BootcDeployRequest): string {
  const ref = request.image;
  return request.targetImgref ?? (ref.tag || !ref.digest ? `${ref.registry}/${ref.repository}:${ref.tag ?? 'latest'}` : formatName(ref));
}

export interface InstallPlan {
  image: ImageInspection;
  containerName: string;
  device: string;
  rootMiB: number;
  filesystem: Filesystem | undefined;
  injectDir: string;
  targetImgref: string;
  selinuxEnabled: boolean;
  hostHasRunUdev: boolean;
  features: BootcFeatures;
  store?: ContainerStore | undefined;
}

export function installArgs(request: BootcDeployRequest, plan: InstallPlan): string[] {
  return buildInstallArgs({
    imageRef: plan.image.podmanReference,
    containerName: plan.containerName,
    device: plan.device,
    rootMiB: plan.rootMiB,
    filesystem: plan.filesystem,
    kargs: request.kargs,
    tpm2Luks: request.tpm2Luks,
    injectDir: plan.injectDir,
    authorizedKeysFile: request.authorizedKeys.length ? `${INJECT_MOUNT}/authorized_keys` : undefined,
    luksDropIn: luksDropIn(request) ? join(plan.injectDir, 'luks.toml') : undefined,
    targetImgref: plan.targetImgref,
    selinuxEnabled: plan.selinuxEnabled,
    hostHasRunUdev: plan.hostHasRunUdev,
    features: plan.features,
    store: plan.store,
  });
}

/**
 * Runs the install. `onStarted` is called at bootc's first output line (podman is then done
 * setting the container up); milestones become progress reports.
 */
export async function runInstall(deps: BootcStepDeps, request: BootcDeployRequest, plan: InstallPlan, io: {
  signal: AbortSignal;
  onStarted: () => void;
  report: (message: string, extra: Record<string, unknown>) => void;
}): Promise<void> {
  const onLine = (line: string) => {
    io.onStarted();
    const milestone = bootcMilestone(line);
    if (milestone) io.report(milestone, { line: line.trim().slice(0, 200) });
  };
  try {
    await deps.runner.run('podman', installArgs(request, plan), {
      signal: io.signal, onStdoutLine: onLine, onStderrLine: onLine, secrets: request.auth?.secrets ?? [],
    });
  } catch (err) {
    if (!isAgentError(err) || err.code !== 'COMMAND_FAILED') throw err;
    if (err.details.exit_code === 127) {
      throw new AgentError('BOOTC_NOT_FOUND', `Container image ${request.imageSource} does not contain the required bootc binary and thus cannot be deployed`, { cause: err, details: err.details });
    }
    const lastLine = String(err.details.stderr_tail ?? '').split('\n').pop() ?? '';
    throw new AgentError('BOOTC_INSTALL_FAILED', `Writing image to device ${plan.device} failed with exit code ${String(err.details.exit_code)}: ${lastLine}`, { cause: err, details: err.details });
  }
}
