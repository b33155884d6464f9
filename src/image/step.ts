/**
 * The work of the `write_image` deploy step of Ironic's `direct` interface (IPA
 * `GenericHardwareManager` `write_image` → `standby.prepare_image`) for whole-disk images; the
 * step and the `standby` commands themselves are registered by ./register.ts, which loads this
 * on first use. Phases: validate, disk, download (verify, decompress, write), config drive,
 * partition UUIDs; the skeleton is src/deploy/phased-step.ts.
 * @module
 */
import type { CommandContext, NodeInfo } from '../commands/index.ts';
import { AgentError } from '../errors.ts';
import type { Config } from '../config/index.ts';
import type { LoadedConfigDrive } from '../configdrive/index.ts';
import { disposeConfigDrive, preloadConfigDrive } from '../deploy/configdrive.ts';
import { finishImageDisk, type DiskFinishDeps } from '../deploy/finish.ts';
import { runPhasedStep, type StepRun } from '../deploy/phased-step.ts';
import { reportSignatures, signaturesResult } from '../deploy/signatures.ts';
import { rootDeviceSelectionFromNode, waitForRootDevice } from '../disk/index.ts';
import type { CommandRunner } from '../exec/index.ts';
import { readCaFile } from '../io/ca-file.ts';
import { MiB } from '../io/sizes.ts';
import type { OciClient } from '../oci/index.ts';
import { TEMP_COPY_MODES, type FreeSpace, type TempCopyMode } from './qcow2.ts';
import { parseWriteImageRequest, type WriteImageRequest } from './request.ts';
import type { TempCopy } from './types.ts';
import { writeArtifactToTarget, type WriteArtifactOptions, type WriteProgress } from './write.ts';

export interface WriteImageDeps extends DiskFinishDeps {
  runner: CommandRunner;
  oci: OciClient;
  config: Pick<Config, 'disk_wait_attempts' | 'disk_wait_delay' | 'include_loop_devices' | 'insecure' | 'ca_file'> & Partial<Pick<Config, 'state_dir' | 'container_storage'>>;
  /** The node from lookup, for `standby.prepare_image` (which is sent without one). */
  getNode?: (() => Promise<NodeInfo | undefined>) | undefined;
  /** IPA's `md5_enabled` (default false): accept a legacy MD5 `checksum`. */
  allowMd5?: boolean | undefined;
  /** Test seams and tuning passed to writeArtifactToTarget. */
  tempDir?: string | undefined;
  freeSpace?: FreeSpace | undefined;
  meminfo?: WriteArtifactOptions['meminfo'];
  http?: WriteArtifactOptions['http'];
  zstdPath?: string | undefined;
  platform?: WriteArtifactOptions['platform'];
}

type Phase = 'validate' | 'disk' | 'download' | 'configdrive' | 'partitions' | 'done';

// Each report is logged by the executor: one every few seconds is enough while downloading.
const PROGRESS_EVERY_MS = 2000;

function progressMessage(p: WriteProgress): string {
  if (p.phase === 'convert') return 'converting qcow2 to raw with qemu-img';
  if (p.phase === 'partitions') return 're-reading the partition table';
  return `downloaded ${Math.floor(p.bytesDownloaded / MiB)}${p.bytesTotal ? ` of ${Math.ceil(p.bytesTotal / MiB)}` : ''} MiB, wrote ${Math.floor(p.bytesWritten / MiB)} MiB`;
}

/**
 * Where a qcow2 image's temporary copy may go: the node's `instance_info.bootc_container_storage`
 * (the same choice the bootc step makes for podman's storage), else the agent option
 * `container_storage`, else `auto`.
 */
export function tempCopyChoice(node: NodeInfo | undefined, option: TempCopyMode | undefined): { mode: TempCopyMode; chosenBy: 'option' | 'instance_info' } {
  const value = node?.instance_info?.['bootc_container_storage'];
  if (value === undefined || value === null) return { mode: option ?? 'auto', chosenBy: 'option' };
  if (!TEMP_COPY_MODES.includes(value as TempCopyMode)) {
    throw new AgentError('DEPLOY_ARGS_INVALID', `Invalid bootc_container_storage: expected one of ${TEMP_COPY_MODES.join(', ')}, got ${JSON.stringify(value)}`, { details: { key: 'bootc_container_storage' } });
  }
  return { mode: value as TempCopyMode, chosenBy: 'instance_info' };
}

function tempCopyMessage(copy: TempCopy): string {
  if (copy.where === 'memory') return `qcow2 image: temporary copy in memory (${copy.dir}, ${copy.chosen_by})`;
  const where = `at ${copy.scratch_offset} (${Math.round(copy.scratch_bytes / MiB)} MiB${copy.loop_device ? `, ${copy.loop_device}` : ''})`;
  return `qcow2 image: temporary copy on a scratch area of the target disk ${where} (${copy.chosen_by})`;
}

async function writeImage(deps: WriteImageDeps, run: StepRun<Phase>, request: WriteImageRequest, device: string, tempCopy: ReturnType<typeof tempCopyChoice>) {
  let lastProgress = 0;
  let copyFields: Record<string, unknown> = {};
  const ca = await readCaFile(deps.config.ca_file);
  const credentials = request.ociAuth?.credentials;
  return writeArtifactToTarget({
    source: request.urls,
    target: device,
    runner: deps.runner,
    oci: deps.oci,
    signal: run.signal, log: run.log,
    checksum: request.checksum,
    requireChecksum: true,
    headers: request.authorization ? { authorization: request.authorization } : undefined,
    credentials,
    platform: deps.platform,
    downloadSource: request.downloadSource,
    registryMirrors: request.registryMirrors,
    diskFormat: request.diskFormat,
    http: { insecure: deps.config.insecure, ...(ca ? { ca } : {}), ...deps.http },
    tempDir: deps.tempDir,
    freeSpace: deps.freeSpace,
    zstdPath: deps.zstdPath,
    meminfo: deps.meminfo,
    tempCopy,
    onTempCopy: (copy) => {
      copyFields = { temp_copy: copy.where, ...(copy.where === 'disk' ? { scratch_offset: copy.scratch_offset, scratch_bytes: copy.scratch_bytes, loop_device: copy.loop_device } : {}) };
      run.report(tempCopyMessage(copy), { ...copyFields, chosen_by: copy.chosen_by, ...(copy.reason ? { reason: copy.reason } : {}) });
    },
    onScratch: (event) => {
      if (event.kind === 'writing') run.markWritten();
      else run.recordScratch(event.dir, []);
    },
    onProgress: (p) => {
      const now = performance.now();
      if (p.phase === 'download' && now - lastProgress < PROGRESS_EVERY_MS) return;
      lastProgress = now;
      run.report(progressMessage(p), {
        phase: p.phase, bytes_done: p.bytesDownloaded, ...(p.bytesTotal !== undefined ? { bytes_total: p.bytesTotal } : {}), bytes_written: p.bytesWritten, ...copyFields,
      });
    },
  });
}

export async function runWriteImage(
  deps: WriteImageDeps, name: string, rawInfo: unknown, configdrive: unknown, node: NodeInfo | undefined, ctx: CommandContext,
): Promise<Record<string, unknown>> {
  let configDrive: Promise<LoadedConfigDrive | null> | undefined;
  try {
    return await runPhasedStep({ label: name, step: name, firstPhase: 'validate' as Phase, ctx, runner: deps.runner }, async (run) => {
      const request = parseWriteImageRequest(rawInfo, configdrive, deps.allowMd5 ?? false, node?.instance_info);
      // A config drive that cannot be written fails here, before the disk is touched.
      configDrive = preloadConfigDrive(request.configdrive, deps.config, run);
      return await writeAndFinish(deps, run, name, node, request, await configDrive);
    });
  } finally {
    await disposeConfigDrive(configDrive, ctx.log);
  }
}

async function writeAndFinish(
  deps: WriteImageDeps, run: StepRun<Phase>, name: string, node: NodeInfo | undefined, request: WriteImageRequest, configDrive: LoadedConfigDrive | null,
): Promise<Record<string, unknown>> {
  if (!request.streamRequested) run.log.info('stream_raw_images is false: streaming anyway (this agent keeps no image cache)');
  run.log.info({ id: request.id, urls: request.urls.length, disk_format: request.diskFormat, checksum: request.checksum?.algorithm, authorization: request.authorization !== undefined }, 'writing image');
  const tempCopy = tempCopyChoice(node, deps.config.container_storage);

  run.enter('disk', 'choosing the target disk');
  const { device } = await waitForRootDevice({
    runner: deps.runner, log: run.log, signal: run.signal,
    selection: rootDeviceSelectionFromNode(node),
    attempts: deps.config.disk_wait_attempts,
    delaySeconds: deps.config.disk_wait_delay,
    includeLoop: deps.config.include_loop_devices,
  });
  run.useDisk(device.name);
  run.log.info({ device: device.name, size: device.size }, 'disk chosen');

  run.enter('download', `writing image ${request.id} to ${device.name}`, { bytes_done: 0 });
  // writeArtifactToTarget wipes the disk on its own failures; later phases' failures wipe it here.
  const written = await writeImage(deps, run, request, device.name, tempCopy);
  reportSignatures(run, written.oci?.signatures);
  run.markWritten();

  const finished = await finishImageDisk(deps, run, device.name, configDrive);

  run.enter('done', `image (${request.id}) written to device ${device.name}`, {
    bytes_done: written.downloadedBytes, bytes_total: written.downloadedBytes, bytes_written: written.bytes,
  });
  return {
    result: `${name}: image (${request.id}) written to device ${device.name} root_uuid=${finished.uuids['root uuid'] ?? 'None'}`,
    device: device.name,
    image: {
      id: request.id, source: written.source, digest: written.digest, disk_format: written.diskFormat, compression: written.compression,
      bytes: written.bytes, downloaded_bytes: written.downloadedBytes, checksum_verified: written.checksumVerified,
      ...(written.tempCopy ? { temp_copy: written.tempCopy } : {}),
      ...(written.oci ? { oci: { ...written.oci, signatures: signaturesResult(written.oci.signatures) } } : {}),
    },
    seconds: written.seconds,
    phases: written.phases,
    partition_uuids: finished.uuids,
    configdrive: finished.configdrive,
  };
}
