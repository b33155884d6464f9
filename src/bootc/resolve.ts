/**
 * The bootc step's first phase: the image is resolved in the registry while the work that does
 * not depend on it runs alongside — the root device lookup (which may wait for the disk to
 * appear), the SELinux and `/run/udev` checks, and the loading of the config drive (started
 * by the step through `ahead`).
 * @module
 */
import { waitForRootDevice, type RootDeviceFound } from '../disk/index.ts';
import { join } from 'node:path';
import { AgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { DEFAULT_REGISTRIES_CONF_DIR, type ImageInspection, type OciClient, type PullSource } from '../oci/index.ts';
import { preparePodmanRegistries, type PodmanRegistries } from '../oci/mirrors.ts';
import { pathExists } from './podman.ts';
import type { BootcDeployRequest } from './request.ts';
import type { BootcStepDeps } from './deps.ts';

/** Work started ahead of the phase that needs it. */
export interface EarlyWork {
  disk: Promise<RootDeviceFound>;
  selinuxEnabled: Promise<boolean>;
  runUdevExists: Promise<boolean>;
  /** Aborted by `cancel()` and by the step's own signal. */
  signal: AbortSignal;
  /** Starts `fn` now; its rejection is handled where it is awaited, or by `cancel()`. */
  ahead<T>(fn: () => Promise<T>): Promise<T>;
  /** Cancels what still runs and waits for all of it to stop (on failure). */
  cancel(): Promise<void>;
}

async function selinuxFromGetenforce(runner: CommandRunner): Promise<boolean> {
  try {
    const { stdout } = await runner.run('getenforce', [], { timeoutMs: 10_000 });
    return /^(Enforcing|Permissive)/.test(stdout.trim());
  } catch {
    return false;
  }
}

export function startEarlyWork(deps: BootcStepDeps, request: BootcDeployRequest, log: Logger, signal: AbortSignal): EarlyWork {
  const early = new AbortController();
  const earlySignal = AbortSignal.any([signal, early.signal]);
  const started: Promise<unknown>[] = [];
  const ahead = <T>(fn: () => Promise<T>): Promise<T> => {
    const promise = Promise.resolve().then(fn);
    promise.catch(() => undefined);
    started.push(promise);
    return promise;
  };
  return {
    disk: ahead(() => waitForRootDevice({
      runner: deps.runner, log, signal: earlySignal,
      selection: request.rootDevice,
      attempts: deps.config.disk_wait_attempts,
      delaySeconds: deps.config.disk_wait_delay,
      includeLoop: deps.config.include_loop_devices,
    })),
    selinuxEnabled: ahead(deps.selinuxEnabled ?? (() => selinuxFromGetenforce(deps.runner))),
    runUdevExists: ahead(() => pathExists('/run/udev')),
    signal: earlySignal,
    ahead,
    cancel: async () => {
      early.abort();
      await Promise.allSettled(started);
    },
  };
}

/** What the registries configuration of one deploy needs from the step's dependencies. */
export interface RegistriesDeps {
  oci: OciClient;
  config: { state_dir: string; registries_conf_dir?: string | undefined };
}

/**
 * The node's mirrors (`bootc_registry_mirrors`) over the agent's, for our client (the overlay)
 * and for podman (a private registries.conf.d under state_dir, 0600, which `dispose()` removes;
 * also when the agent's drop-in directory is not the one podman reads by itself).
 */
export async function prepareNodeRegistries(deps: RegistriesDeps, request: Pick<BootcDeployRequest, 'registryMirrors'>): Promise<PodmanRegistries> {
  const confDir = deps.config.registries_conf_dir ?? DEFAULT_REGISTRIES_CONF_DIR;
  return preparePodmanRegistries({
    base: await deps.oci.registries(),
    mirrors: request.registryMirrors,
    confDir,
    confDirIsDefault: confDir === DEFAULT_REGISTRIES_CONF_DIR,
    parentDir: join(deps.config.state_dir, 'registries'),
  });
}

/** Which source served the image, as results and progress reports name it. */
export function sourceResult(source: PullSource): { registry: string; repository: string; mirror: boolean } {
  return { registry: source.registry, repository: source.repository, mirror: source.mirror };
}

/**
 * Inspects the image (through the node's mirrors when `registries` has them); fails unless it is
 * a bootable container image.
 */
export async function resolveImage(deps: BootcStepDeps, request: BootcDeployRequest, early: EarlyWork, log: Logger, registries?: Pick<PodmanRegistries, 'overlay'>): Promise<ImageInspection> {
  const credentials = request.auth?.credentials;
  const image = await early.ahead(() => deps.oci.inspectImage(request.image, {
    signal: early.signal, ...(credentials ? { credentials } : {}), ...(registries?.overlay.registries.length ? { registries: registries.overlay } : {}),
  }));
  if (image.kind !== 'bootc-image') {
    throw new AgentError('IMAGE_NOT_BOOTABLE', `${request.imageSource} is an OCI artifact${image.artifactType ? ` (${image.artifactType})` : ''}, not a bootable container image`, { details: { digest: image.digest } });
  }
  log.info({ digest: image.digest, platform: image.platform, layers: image.layers.length, compressed_bytes: image.totalCompressedSize, source: sourceResult(image.source) }, 'image resolved');
  return image;
}
