/**
 * The `execute_bootc_install` deploy step: registry image → installed disk with config drive,
 * SSH keys, kernel arguments and LUKS options. Phases: resolve, admission, disk, pull, probe,
 * install, verify, config drive. Any failure after the disk was chosen leaves it wiped.
 * @module
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { arch as osArch } from 'node:os';
import { join } from 'node:path';
import type { StepContext, StepDefinition } from '../commands/index.ts';
import type { Config } from '../config/index.ts';
import { isConfigDriveUrl, loadConfigDrive } from '../configdrive/index.ts';
import { eraseDevicesMetadata, rootDeviceSelectionFromNode, waitForRootDevice, type BlockDevice } from '../disk/index.ts';
import { AgentError, describeError, isAgentError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { credentialsFromPullSecret, formatName, parsePullSecret, parseReference, type Credentials, type OciClient } from '../oci/index.ts';
import { checkAdmission } from './admission.ts';
import { credentialSecrets, podmanAuthJson } from './auth-file.ts';
import { bootcFeatures } from './bootc-version.ts';
import { planLayout } from './layout.ts';
import { partitionUuids, readPartitionTable, type PartitionTable } from './partitions.ts';
import { buildInstallArgs, INJECT_MOUNT, luksDropInToml } from './podman-args.ts';
import { pathExists, probeBootc, pullImage, removeContainer, uniqueName, type PodmanDeps } from './podman.ts';
import { bootcMilestone } from './progress.ts';
import { BOOTC_STEP_INFO } from './step.ts';
import { parseBootcDeployRequest } from './request.ts';

export interface BootcStepDeps {
  runner: CommandRunner;
  config: Pick<Config, 'disable_bootc_deploy' | 'disk_wait_attempts' | 'disk_wait_delay' | 'include_loop_devices' | 'state_dir'>;
  oci: OciClient;
  /** Writes the config drive at the end of the disk (src/configdrive). */
  writeConfigDrive(device: string, value: string, options: { signal: AbortSignal; log: StepContext['log'] }): Promise<Record<string, unknown>>;
  /** Records IPA's partition UUIDs for `standby.get_partition_uuids`. */
  recordPartitionUuids(uuids: Record<string, string>): void;
  /** Test seams. */
  arch?: string;
  storagePath?: string;
  selinuxEnabled?: () => Promise<boolean>;
  retryDelayMs?: number;
}

type Phase = 'resolve' | 'admission' | 'disk' | 'pull' | 'probe' | 'install' | 'verify' | 'configdrive' | 'done';

// Debian/Node architecture names → the names bootc layouts are defined for.
function machineArch(): string {
  const a = osArch();
  return a === 'x64' ? 'x86_64' : a === 'arm64' ? 'aarch64' : a;
}

async function selinuxFromGetenforce(runner: CommandRunner): Promise<boolean> {
  try {
    const { stdout } = await runner.run('getenforce', [], { timeoutMs: 10_000 });
    return /^(Enforcing|Permissive)/.test(stdout.trim());
  } catch {
    return false;
  }
}

// Work started ahead of the phase that needs it: its rejection is handled where it is awaited.
function ahead<T>(fn: () => Promise<T>): Promise<T> {
  const promise = Promise.resolve().then(fn);
  promise.catch(() => undefined);
  return promise;
}

// Root filesystem type from the image's install config, if it names one.
function installConfigFilesystem(config: string): string | undefined {
  return /\[install\.filesystem\.root\][^[]*?\btype\s*=\s*"([a-z0-9]+)"/s.exec(config)?.[1];
}

export function createBootcStep(deps: BootcStepDeps): StepDefinition {
  return { ...BOOTC_STEP_INFO, run: (args, ctx) => runBootcInstall(deps, args, ctx) };
}

export async function runBootcInstall(deps: BootcStepDeps, args: Record<string, unknown>, ctx: StepContext): Promise<Record<string, unknown>> {
  const { signal } = ctx;
  const log = ctx.log.child({ step: 'execute_bootc_install' });
  if (deps.config.disable_bootc_deploy) {
    throw new AgentError('STEP_DISABLED', 'The bootc deploy interface is administratively disabled. Deployment cannot proceed.');
  }
  const started = performance.now();
  const timings: Record<string, number> = {};
  let phase: Phase = 'resolve';
  let phaseStarted = performance.now();
  const enter = (next: Phase, message: string, extra: Record<string, unknown> = {}) => {
    timings[`${phase}_ms`] = Math.round(performance.now() - phaseStarted);
    phase = next;
    phaseStarted = performance.now();
    ctx.reportProgress({ phase, message, ...extra });
  };
  const podmanDeps: PodmanDeps = { runner: deps.runner, log, secretsDir: join(deps.config.state_dir, 'secrets'), ...(deps.retryDelayMs === undefined ? {} : { retryDelayMs: deps.retryDelayMs }) };
  const installName = uniqueName('bootc-agent-install');
  const probeName = uniqueName('bootc-agent-probe');
  let device: BlockDevice | undefined;
  let injectDir: string | undefined;
  let secrets: string[] = [];
  // Lookups that do not depend on the image run while it is resolved and pulled; a failure
  // before they are awaited cancels them, and the step waits for them before it returns.
  const early = new AbortController();
  const earlySignal = AbortSignal.any([signal, early.signal]);
  const pending: Promise<unknown>[] = [];
  // The probe container is removed while the install runs (podman `--rm` would make the probe
  // itself wait for it), and at the latest before the step returns.
  let probeExited = false;
  let probeRemoval: Promise<void> | undefined;
  const removeProbe = () => (probeRemoval ??= removeContainer(podmanDeps, probeName));

  try {
    const request = parseBootcDeployRequest(args, ctx.node);
    ctx.reportProgress({ phase, message: `resolving ${request.imageSource}` });
    const diskLookup = ahead(() => waitForRootDevice({
      runner: deps.runner, log, signal: earlySignal,
      selection: rootDeviceSelectionFromNode(ctx.node),
      attempts: deps.config.disk_wait_attempts,
      delaySeconds: deps.config.disk_wait_delay,
      includeLoop: deps.config.include_loop_devices,
    }));
    const selinuxEnabled = ahead(deps.selinuxEnabled ?? (() => selinuxFromGetenforce(deps.runner)));
    const runUdevExists = ahead(() => pathExists('/run/udev'));
    pending.push(diskLookup, selinuxEnabled, runUdevExists);
    const ref = parseReference(request.imageSource);
    let credentials: Credentials | undefined;
    if (request.pullSecret) {
      const secret = parsePullSecret(request.pullSecret);
      credentials = credentialsFromPullSecret(secret, ref.registry, ref.repository);
      secrets = [request.pullSecret, ...credentialSecrets(credentials)];
      log.info({ shape: secret.kind, registry: ref.registry, has_credentials: credentials !== undefined }, 'pull secret found');
    }
    // An inline config drive that cannot be written should fail before the disk is touched,
    // not after a full install; it is decoded (while the image resolves) and again when written.
    // URLs are fetched only then.
    const inline = request.configdrive && !isConfigDriveUrl(request.configdrive.trim()) ? request.configdrive : undefined;
    const driveCheck = inline ? ahead(async () => (await loadConfigDrive(inline, { signal: earlySignal, log })).dispose()) : undefined;
    const inspected = ahead(() => deps.oci.inspectImage(ref, { signal: earlySignal, ...(credentials ? { credentials } : {}) }));
    pending.push(...(driveCheck ? [driveCheck] : []), inspected);
    await driveCheck;
    const image = await inspected;
    if (image.kind !== 'bootc-image') {
      throw new AgentError('IMAGE_NOT_BOOTABLE', `${request.imageSource} is an OCI artifact${image.artifactType ? ` (${image.artifactType})` : ''}, not a bootable container image`, { details: { digest: image.digest } });
    }
    log.info({ digest: image.digest, platform: image.platform, layers: image.layers.length, compressed_bytes: image.totalCompressedSize }, 'image resolved');

    enter('admission', 'checking memory and storage', { bytes_total: image.totalCompressedSize });
    const admission = await checkAdmission({
      compressedBytes: image.totalCompressedSize,
      unpackedBytes: image.totalUncompressedSize,
      storagePath: deps.storagePath ?? '/var/lib/containers',
    });

    enter('disk', 'choosing the target disk');
    const found = await diskLookup;
    device = found.device;
    const layout = planLayout({ diskBytes: device.size, arch: deps.arch ?? machineArch(), tpm2Luks: request.tpm2Luks });
    log.info({ device: device.name, size: device.size, root_mib: layout.rootMiB, reserve: layout.parts }, 'disk chosen');

    enter('pull', `pulling ${image.podmanReference}`, { bytes_done: 0, bytes_total: image.totalCompressedSize });
    await pullImage(podmanDeps, {
      imageRef: image.podmanReference,
      authJson: credentials ? podmanAuthJson(ref.registry, credentials) : undefined,
      layers: image.layers.map((l) => ({ digest: l.digest, size: l.size })),
      signal,
      onProgress: (p) => ctx.reportProgress({ phase: 'pull', message: `pulled ${p.layers_done}/${p.layers_total} layers`, ...p }),
    });

    enter('probe', 'reading the image\'s bootc version');
    const probe = await probeBootc(podmanDeps, image.podmanReference, probeName, signal);
    probeExited = true;
    const features = bootcFeatures(probe.version, { authorizedKeys: request.authorizedKeys.length > 0 });
    const filesystem = request.filesystem ?? (installConfigFilesystem(probe.installConfig) ? undefined : 'xfs');

    enter('install', `installing with bootc ${probe.version.text} to ${device.name}`);
    injectDir = await prepareInjectDir(deps.config.state_dir, request.authorizedKeys, request.tpm2Luks && request.luksAllowInInstallConfig);
    let hostHasRunUdev = await runUdevExists;
    if (!hostHasRunUdev && features.needsRunUdev) {
      // bootc ≥ 1.13 mirrors /run/udev and fails when the host has none (bootc#2239).
      await mkdir('/run/udev', { recursive: true });
      hostHasRunUdev = true;
    }
    // Running by digest would make the digest the update target; follow the user's tag instead.
    const targetImgref = request.targetImgref ?? (ref.tag || !ref.digest ? `${ref.registry}/${ref.repository}:${ref.tag ?? 'latest'}` : formatName(ref));
    const argv = buildInstallArgs({
      imageRef: image.podmanReference,
      containerName: installName,
      device: device.name,
      rootMiB: layout.rootMiB,
      filesystem,
      kargs: request.kargs,
      tpm2Luks: request.tpm2Luks,
      injectDir,
      authorizedKeysFile: request.authorizedKeys.length ? `${INJECT_MOUNT}/authorized_keys` : undefined,
      luksDropIn: request.tpm2Luks && request.luksAllowInInstallConfig ? join(injectDir, 'luks.toml') : undefined,
      targetImgref,
      selinuxEnabled: await selinuxEnabled,
      hostHasRunUdev,
      features,
    });
    const onLine = (line: string) => {
      void removeProbe(); // bootc is running: podman is done setting the install container up
      const milestone = bootcMilestone(line);
      if (milestone) ctx.reportProgress({ phase: 'install', message: milestone, line: line.trim().slice(0, 200) });
    };
    try {
      await deps.runner.run('podman', argv, { signal, onStdoutLine: onLine, onStderrLine: onLine, secrets });
    } catch (err) {
      if (isAgentError(err) && err.code === 'COMMAND_FAILED') {
        if (err.details.exit_code === 127) {
          throw new AgentError('BOOTC_NOT_FOUND', `Container image ${request.imageSource} does not contain the required bootc binary and thus cannot be deployed`, { cause: err, details: err.details });
        }
        throw new AgentError('BOOTC_INSTALL_FAILED', `Writing image to device ${device.name} failed with exit code ${String(err.details.exit_code)}: ${String(err.details.stderr_tail ?? '').split('\n').pop() ?? ''}`, { cause: err, details: err.details });
      }
      throw err;
    }

    enter('verify', 'reading the partition table back');
    const [table] = await Promise.all([readPartitionTable(deps.runner, device.name, device.size, signal), removeProbe()]);
    if (table.partitions.length === 0) {
      throw new AgentError('PARTITION_VALIDATION_FAILED', `bootc reported success but ${device.name} has no partitions`, { details: { device: device.name } });
    }

    let configdrive: Record<string, unknown> | null = null;
    if (request.configdrive) {
      enter('configdrive', 'writing the config drive');
      configdrive = await deps.writeConfigDrive(device.name, request.configdrive, { signal, log });
    }
    const finalTable: PartitionTable = configdrive ? await readPartitionTable(deps.runner, device.name, device.size, signal) : table;
    const uuids = partitionUuids(finalTable);
    deps.recordPartitionUuids(uuids);

    enter('done', `Container image (${request.imageSource}) written to device ${device.name}`);
    timings.total_ms = Math.round(performance.now() - started);
    return {
      result: `execute_bootc_install: Container image (${request.imageSource}) written to device ${device.name}`,
      image_digest: image.digest,
      image_reference: image.podmanReference,
      target_imgref: targetImgref,
      device: device.name,
      bootc_version: probe.version.text,
      root_size_mib: layout.rootMiB,
      partitions: finalTable.partitions,
      partition_uuids: uuids,
      free_tail_bytes: finalTable.freeTailBytes,
      configdrive,
      admission,
      timings_ms: timings,
    };
  } catch (err) {
    const failure = toAgentError(err);
    // Log the first error before cleanup so a cleanup failure can never hide it.
    log.error({ err: failure, phase, details: failure.details }, `bootc deploy failed in phase ${phase}`);
    const cleanup: Record<string, unknown> = {};
    early.abort();
    await Promise.allSettled(pending);
    // A probe that failed was removed by probeBootc itself.
    await Promise.all([removeContainer(podmanDeps, installName), ...(probeExited ? [removeProbe()] : [])]);
    if (device) cleanup.disk = await wipeAfterFailure(deps.runner, device, log);
    throw new AgentError(failure.code, `Deploy step execute_bootc_install failed in phase ${phase}: ${failure.message}`, {
      cause: failure,
      details: { ...failure.details, phase, ...(device ? { device: device.name } : {}), cleanup },
    });
  } finally {
    if (injectDir) await rm(injectDir, { recursive: true, force: true });
  }
}

// Files bind-mounted read-only into the install container; nothing secret goes here.
async function prepareInjectDir(stateDir: string, keys: readonly string[], luksDropIn: boolean): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(stateDir, 'inject-'));
  if (keys.length) await writeFile(join(dir, 'authorized_keys'), `${keys.join('\n')}\n`, { mode: 0o644 });
  if (luksDropIn) await writeFile(join(dir, 'luks.toml'), luksDropInToml(), { mode: 0o644 });
  return dir;
}

// No half-installed OS may stay behind: erase the disk's metadata (both GPTs, signatures).
async function wipeAfterFailure(runner: CommandRunner, device: BlockDevice, log: StepContext['log']): Promise<string> {
  try {
    await eraseDevicesMetadata({ runner, devices: [{ ...device, removable: false, read_only: false }], log });
    log.info({ device: device.name }, 'disk wiped after the failed deploy');
    return 'wiped';
  } catch (err) {
    const wipeError = new AgentError('DISK_WIPE_FAILED', `Wiping ${device.name} after the failed deploy failed too`, { cause: err });
    log.error({ err: wipeError }, 'disk state unknown');
    return describeError(toAgentError(err));
  }
}
