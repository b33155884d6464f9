/**
 * The bootc step's first phase: the image is resolved in the registry while the work that does
 * not depend on it runs alongside — the root device lookup (which may wait for the disk to
 * appear), the SELinux and `/run/udev` checks, and the decoding of an inline config drive, so
 * that a config drive that cannot be written fails before the disk is touched.
 * @module
 */
import type { StepContext } from '../commands/index.ts';
import { isConfigDriveUrl, loadConfigDrive } from '../configdrive/index.ts';
import { rootDeviceSelectionFromNode, waitForRootDevice, type RootDeviceFound } from '../disk/index.ts';
import { AgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { ImageInspection } from '../oci/index.ts';
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

export function startEarlyWork(deps: BootcStepDeps, node: StepContext['node'], log: Logger, signal: AbortSignal): EarlyWork {
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
      selection: rootDeviceSelectionFromNode(node),
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

/**
 * Inspects the image (and decodes an inline config drive meanwhile); fails unless the image is
 * a bootable container image. URL config drives are fetched only when written.
 */
export async function resolveImage(deps: BootcStepDeps, request: BootcDeployRequest, early: EarlyWork, log: Logger): Promise<ImageInspection> {
  const { signal } = early;
  const inline = request.configdrive && !isConfigDriveUrl(request.configdrive.trim()) ? request.configdrive : undefined;
  const driveCheck = inline ? early.ahead(async () => (await loadConfigDrive(inline, { signal, log })).dispose()) : undefined;
  const credentials = request.auth?.credentials;
  const inspected = early.ahead(() => deps.oci.inspectImage(request.image, { signal, ...(credentials ? { credentials } : {}) }));
  await driveCheck;
  const image = await inspected;
  if (image.kind !== 'bootc-image') {
    throw new AgentError('IMAGE_NOT_BOOTABLE', `${request.imageSource} is an OCI artifact${image.artifactType ? ` (${image.artifactType})` : ''}, not a bootable container image`, { details: { digest: image.digest } });
  }
  log.info({ digest: image.digest, platform: image.platform, layers: image.layers.length, compressed_bytes: image.totalCompressedSize }, 'image resolved');
  return image;
}
