/**
 * The `execute_bootc_install` deploy step: registry image → installed disk with config drive,
 * SSH keys, kernel arguments and LUKS options. Phases: resolve (./resolve.ts), admission, disk,
 * pull and probe (./podman.ts), install (./install.ts), verify, config drive. The skeleton —
 * progress, timings, the error naming the phase, the wipe — is src/deploy/phased-step.ts.
 * @module
 */
import { mkdir, rm } from 'node:fs/promises';
import { arch as osArch } from 'node:os';
import { dirname, join } from 'node:path';
import type { StepContext } from '../commands/index.ts';
import type { LoadedConfigDrive } from '../configdrive/index.ts';
import { disposeConfigDrive, preloadConfigDrive } from '../deploy/configdrive.ts';
import { finishInstalledDisk } from '../deploy/finish.ts';
import { runPhasedStep, type StepRun } from '../deploy/phased-step.ts';
import { reportSignatures, signaturesResult } from '../deploy/signatures.ts';
import { createScratch, describePartitions, freeTailBytes, type Scratch } from '../disk/index.ts';
import { AgentError } from '../errors.ts';
import { MiB } from '../io/sizes.ts';
import type { ImageInspection } from '../oci/index.ts';
import { chooseContainerStorage, type StorageChoice } from './admission.ts';
import { podmanAuthJson } from './auth-file.ts';
import { bootcFeatures } from './bootc-version.ts';
import type { BootcStepDeps } from './deps.ts';
import { prepareInjectDir, runInstall, targetImgrefOf, type InstallPlan } from './install.ts';
import { growRoot, type RootGrowth } from './grow-root.ts';
import { planLayout, type LayoutPlan } from './layout.ts';
import { storeArgs } from './podman-args.ts';
import { probeBootc, pullImage, removeContainer, uniqueName, type PodmanDeps } from './podman.ts';
import { parseBootcDeployRequest, type BootcDeployRequest } from './request.ts';
import { prepareNodeRegistries, resolveImage, sourceResult, startEarlyWork, type EarlyWork } from './resolve.ts';
import type { PodmanRegistries } from '../oci/mirrors.ts';

type Phase = 'resolve' | 'admission' | 'disk' | 'pull' | 'probe' | 'install' | 'verify' | 'configdrive' | 'done';

// Node's architecture names → the names bootc layouts are defined for.
function machineArch(): string {
  const a = osArch();
  return a === 'x64' ? 'x86_64' : a === 'arm64' ? 'aarch64' : a;
}

// Root filesystem type from the image's install config, if it names one.
function installConfigFilesystem(config: string): string | undefined {
  return /\[install\.filesystem\.root\][^[]*?\btype\s*=\s*"([a-z0-9]+)"/s.exec(config)?.[1];
}

/** The containers of one deploy, removed by name on every way out. */
function stepContainers(podman: PodmanDeps) {
  const install = uniqueName('bootc-agent-install');
  const probe = uniqueName('bootc-agent-probe');
  let probeExited = false;
  let probeRemoval: Promise<void> | undefined;
  // The probe is removed while the install runs (podman's --rm would make the probe itself wait).
  const removeProbe = () => (probeRemoval ??= removeContainer(podman, probe));
  return {
    install, probe, removeProbe,
    probeExited: () => { probeExited = true; },
    // A probe that failed was removed by probeBootc itself.
    removeAll: () => Promise.all([removeContainer(podman, install), ...(probeExited ? [removeProbe()] : [])]),
  };
}

/** What one deploy holds while it runs, released on every way out. */
interface Held {
  early?: EarlyWork;
  containers?: ReturnType<typeof stepContainers>;
  injectDir?: string;
  configDrive?: Promise<LoadedConfigDrive | null>;
  image?: Promise<ImageInspection>;
  /** The node's mirrors over the agent's: the client's overlay and podman's private configuration. */
  registries?: Promise<PodmanRegistries>;
  scratch?: Scratch;
}

export async function runBootcInstall(deps: BootcStepDeps, args: Record<string, unknown>, ctx: StepContext): Promise<Record<string, unknown>> {
  if (deps.config.disable_bootc_deploy) {
    throw new AgentError('STEP_DISABLED', 'The bootc deploy interface is administratively disabled. Deployment cannot proceed.');
  }
  const held: Held = {};
  const options = { label: 'Deploy step execute_bootc_install', step: 'execute_bootc_install', firstPhase: 'resolve' as Phase, ctx, runner: deps.runner };
  try {
    return await runPhasedStep(options, async (run) => {
      const request = parseBootcDeployRequest(args, ctx.node);
      run.report(`resolving ${request.imageSource}`);
      if (request.auth) run.log.info({ shape: request.auth.shape, registry: request.image.registry, has_credentials: request.auth.credentials !== undefined }, 'pull secret found');
      const early = held.early = startEarlyWork(deps, request, run.log, run.signal);
      const podman: PodmanDeps = { runner: deps.runner, log: run.log, secretsDir: join(deps.config.state_dir, 'secrets'), ...(deps.retryDelayMs === undefined ? {} : { retryDelayMs: deps.retryDelayMs }) };
      held.containers = stepContainers(podman);
      // Journaled before either starts: an agent killed mid-deploy removes them when it restarts.
      run.recordContainers(held.containers.install, held.containers.probe);
      held.configDrive = early.ahead(() => preloadConfigDrive(request.configdrive, deps.config, run, early.signal));
      const registries = held.registries = early.ahead(() => prepareNodeRegistries(deps, request));
      held.image = early.ahead(async () => resolveImage(deps, request, early, run.log, await registries));
      return await deploy(deps, run, request, podman, held);
    }, async (run) => {
      await held.early?.cancel();
      await held.containers?.removeAll();
      // before the disk is wiped: the loop device holds it and the scratch is mounted
      await held.scratch?.teardown().catch((err: unknown) => run.log.error({ err }, 'scratch teardown failed'));
    });
  } finally {
    if (held.injectDir) await rm(held.injectDir, { recursive: true, force: true });
    await (await held.registries?.catch(() => undefined))?.dispose();
    await disposeConfigDrive(held.configDrive, ctx.log);
  }
}

async function deploy(deps: BootcStepDeps, run: StepRun<Phase>, request: BootcDeployRequest, podman: PodmanDeps, held: Held): Promise<Record<string, unknown>> {
  const early = held.early!;
  const containers = held.containers!;
  // A config drive that cannot be written fails here, before the disk is touched (and is
  // reported before an image error: it was started first).
  const configDrive = await held.configDrive!;
  const image = await held.image!;
  run.report(`image resolved on ${image.source.mirror ? 'mirror ' : ''}${image.source.registry}/${image.source.repository}`, { source: sourceResult(image.source) });
  reportSignatures(run, image.signatures);

  const { storage, device, layout } = await admitAndPlace(deps, run, request, podman, held, image);
  const admission = storage.admission;

  run.enter('pull', `pulling ${image.podmanReference}`, { bytes_done: 0, bytes_total: image.totalCompressedSize });
  const credentials = request.auth?.credentials;
  await pullImage(podman, {
    imageRef: image.podmanReference,
    authJson: credentials ? podmanAuthJson(request.image.registry, credentials) : undefined,
    layers: image.layers.map((l) => ({ digest: l.digest, size: l.size })),
    signal: run.signal,
    onProgress: (p) => run.report(`pulled ${p.layers_done}/${p.layers_total} layers`, { ...p }),
    signaturesVerified: (image.signatures?.length ?? 0) > 0,
    registriesEnv: (await held.registries!).env,
  });

  run.enter('probe', 'reading the image\'s bootc version');
  const probe = await probeBootc(podman, image.podmanReference, containers.probe, run.signal);
  containers.probeExited();
  if (podman.store && probe.repartDefinitions.length) {
    throw new AgentError('CONTAINER_STORAGE_UNSUPPORTED', `Container storage on the target disk cannot be used for ${request.imageSource}: the image has systemd-repart definitions (${probe.repartDefinitions.slice(0, 3).join(', ')}), so bootc would partition with systemd-repart, which ignores --root-size and discards the scratch area`, {
      details: { repart_definitions: probe.repartDefinitions.slice(0, 20) },
    });
  }
  const features = bootcFeatures(probe.version, { authorizedKeys: request.authorizedKeys.length > 0 });

  run.enter('install', `installing with bootc ${probe.version.text} to ${device.name}`);
  const injectDir = held.injectDir = await prepareInjectDir(deps.config.state_dir, request);
  let hostHasRunUdev = await early.runUdevExists;
  if (!hostHasRunUdev && features.needsRunUdev) {
    // bootc ≥ 1.13 mirrors /run/udev and fails when the host has none (bootc#2239).
    await mkdir('/run/udev', { recursive: true });
    hostHasRunUdev = true;
  }
  const plan: InstallPlan = {
    image, containerName: containers.install, device: device.name, rootMiB: layout.rootMiB,
    filesystem: request.filesystem ?? (installConfigFilesystem(probe.installConfig) ? undefined : 'xfs'),
    injectDir, targetImgref: targetImgrefOf(request), selinuxEnabled: await early.selinuxEnabled, hostHasRunUdev, features, store: podman.store,
  };
  // From here on the disk is being written: a failure wipes it (nothing before this touched it).
  run.markWritten();
  await runInstall(deps, request, plan, { signal: run.signal, onStarted: () => void containers.removeProbe(), report: (m, extra) => run.report(m, extra) });

  const growth = await releaseScratch(deps, run, held, layout, device.name);
  run.enter('verify', 'reading the partition table back');
  const [finished] = await Promise.all([finishInstalledDisk(deps, run, device.name, configDrive), containers.removeProbe()]);

  run.enter('done', `Container image (${request.imageSource}) written to device ${device.name}`);
  return {
    result: `execute_bootc_install: Container image (${request.imageSource}) written to device ${device.name}`,
    image_digest: image.digest,
    signatures: signaturesResult(image.signatures),
    image_reference: image.podmanReference,
    source: sourceResult(image.source),
    target_imgref: plan.targetImgref,
    device: device.name,
    bootc_version: probe.version.text,
    root_size_mib: growth?.root_grown_to_mib ?? layout.rootMiB,
    container_storage: { ...storageReport(storage), ...(layout.scratch ? { scratch_offset: layout.scratch.offsetBytes, installed_root_mib: layout.rootMiB, ...growth } : {}) },
    partitions: describePartitions(finished.table),
    partition_uuids: finished.uuids,
    free_tail_bytes: freeTailBytes(finished.table, device.size),
    configdrive: finished.configdrive,
    admission,
    timings_ms: run.timings(),
  };
}

function storageReport(storage: StorageChoice): Record<string, unknown> {
  return { mode: storage.mode, chosen_by: storage.chosen_by, ...(storage.reason ? { reason: storage.reason } : {}), ...(storage.scratch_bytes ? { scratch_bytes: storage.scratch_bytes } : {}) };
}

/** Disk mode, after the install: the scratch's containers, mounts and loop device go, root grows over it. */
async function releaseScratch(deps: BootcStepDeps, run: StepRun<Phase>, held: Held, layout: LayoutPlan, device: string): Promise<RootGrowth | undefined> {
  if (!held.scratch || !layout.scratch) return undefined;
  run.report('removing the container storage on the target disk');
  await held.containers!.removeProbe();
  await held.scratch.teardown();
  const end = layout.scratch.offsetBytes + layout.scratch.sizeBytes;
  const growth = await growRoot(deps.runner, device, end, { parentDir: '/run', signal: run.signal, log: run.log });
  run.report(growth.root_grown_to_mib === null ? `root left at ${layout.rootMiB} MiB: ${growth.not_grown_because ?? ''}` : `root grown to ${growth.root_grown_to_mib} MiB`, { ...growth });
  return growth;
}

/** Admission, the disk, the layout and, in disk mode, the scratch area podman will use. */
async function admitAndPlace(deps: BootcStepDeps, run: StepRun<Phase>, request: BootcDeployRequest, podman: PodmanDeps, held: Held, image: ImageInspection) {
  run.enter('admission', 'checking memory and storage', { bytes_total: image.totalCompressedSize });
  const storage = await chooseContainerStorage({
    compressedBytes: image.totalCompressedSize, unpackedBytes: image.totalUncompressedSize, storagePath: deps.storagePath ?? '/var/lib/containers',
    mode: request.containerStorage ?? deps.config.container_storage ?? 'auto', chosenBy: request.containerStorage ? 'instance_info' : 'option',
    ...(deps.memAvailable ? { memAvailable: deps.memAvailable } : {}),
  });
  run.report(`container storage: ${storage.mode} (${storage.chosen_by})`, storageReport(storage));

  run.enter('disk', 'choosing the target disk');
  const { device } = await held.early!.disk;
  run.useDisk(device.name);
  const layout = planLayout({ diskBytes: device.size, arch: deps.arch ?? machineArch(), tpm2Luks: request.tpm2Luks, scratchBytes: storage.scratch_bytes });
  run.log.info({ device: device.name, size: device.size, root_mib: layout.rootMiB, reserve: layout.parts, scratch: layout.scratch }, 'disk chosen');
  if (layout.scratch) {
    // From here on the disk is written (its tail): a failure tears the scratch down and wipes it.
    run.markWritten();
    held.scratch = await createScratch(deps.runner, { disk: device.name, ...layout.scratch, signal: run.signal, log: run.log });
    podman.store = held.scratch;
    run.recordScratch(dirname(held.scratch.mountpoint), storeArgs(held.scratch));
    run.report(`container storage on ${device.name} at ${layout.scratch.offsetBytes} (${Math.round(layout.scratch.sizeBytes / MiB)} MiB, ${held.scratch.device})`, { scratch_offset: layout.scratch.offsetBytes, scratch_bytes: layout.scratch.sizeBytes, loop_device: held.scratch.device });
  }
  return { storage, device, layout };
}
