/**
 * The work of the `write_image` deploy step of Ironic's `direct` interface (IPA
 * `GenericHardwareManager` `write_image` → `standby.prepare_image`) for whole-disk images; the
 * step and the `standby` commands themselves are in ./commands.ts and load this on first use.
 * Phases: disk, download (verify, decompress, write), config drive, partition UUIDs. Any
 * failure after writing began leaves the disk wiped.
 * @module
 */
import { open, readFile } from 'node:fs/promises';
import type { CommandContext, NodeInfo } from '../commands/index.ts';
import type { Config } from '../config/index.ts';
import { partitionUuids, readPartitionTable } from '../deploy/partitions.ts';
import { eraseDevicesMetadata, rootDeviceSelectionFromNode, waitForRootDevice, type BlockDevice } from '../disk/index.ts';
import { AgentError, describeError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { credentialsFromPullSecret, parsePullSecret, parseReference, type Credentials, type OciClient } from '../oci/index.ts';
import type { FreeSpace } from './qcow2.ts';
import { parseWriteImageRequest, type WriteImageRequest } from './request.ts';
import { writeArtifactToTarget, type WriteArtifactOptions, type WriteArtifactResult } from './write.ts';

export interface WriteImageDeps {
  runner: CommandRunner;
  oci: OciClient;
  config: Pick<Config, 'disk_wait_attempts' | 'disk_wait_delay' | 'include_loop_devices' | 'insecure' | 'ca_file'>;
  /** Writes the config drive at the end of the disk (src/configdrive). */
  writeConfigDrive(device: string, value: string, options: { signal: AbortSignal; log: Logger }): Promise<Record<string, unknown>>;
  /** Records IPA's partition UUIDs for `standby.get_partition_uuids`. */
  recordPartitionUuids(uuids: Record<string, string>): void;
  /** The node from lookup, for `standby.prepare_image` (which is sent without one). */
  getNode?: (() => Promise<NodeInfo | undefined>) | undefined;
  /** IPA's `md5_enabled` (default false): accept a legacy MD5 `checksum`. */
  allowMd5?: boolean | undefined;
  /** Test seams and tuning passed to writeArtifactToTarget. */
  tempDir?: string | undefined;
  freeSpace?: FreeSpace | undefined;
  http?: WriteArtifactOptions['http'];
  zstdPath?: string | undefined;
  platform?: WriteArtifactOptions['platform'];
}

const MiB = 1024 * 1024;
const PROGRESS_EVERY_MS = 2000;

/** The MBR disk signature at offset 440, as IPA's `get_disk_identifier` prints it (`0x%08x`). */
async function diskIdentifier(device: string): Promise<string | undefined> {
  try {
    const handle = await open(device, 'r');
    try {
      const buf = Buffer.alloc(4);
      const { bytesRead } = await handle.read(buf, 0, 4, 440);
      return bytesRead === 4 ? `0x${buf.readUInt32LE(0).toString(16).padStart(8, '0')}` : undefined;
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
}

function ociCredentials(request: WriteImageRequest): { credentials?: Credentials; secrets: string[] } {
  if (!request.ociPullSecret) return { secrets: [] };
  const ociUrl = request.urls.find((u) => /^oci:\/\//i.test(u));
  if (!ociUrl) return { secrets: [request.ociPullSecret] };
  const ref = parseReference(ociUrl);
  const credentials = credentialsFromPullSecret(parsePullSecret(request.ociPullSecret), ref.registry, ref.repository);
  return { ...(credentials ? { credentials } : {}), secrets: [request.ociPullSecret] };
}

type Phase = 'validate' | 'disk' | 'download' | 'configdrive' | 'partitions' | 'done';

export async function runWriteImage(
  deps: WriteImageDeps, name: string, rawInfo: unknown, configdrive: unknown, node: NodeInfo | undefined, ctx: CommandContext,
): Promise<Record<string, unknown>> {
  const { signal } = ctx;
  const log = ctx.log.child({ step: name });
  let phase: Phase = 'validate';
  let device: BlockDevice | undefined;
  let written: WriteArtifactResult | undefined;
  const enter = (next: Phase, message: string, extra: Record<string, unknown> = {}) => {
    phase = next;
    ctx.reportProgress({ phase, message, ...extra });
  };
  try {
    const request = parseWriteImageRequest(rawInfo, configdrive, deps.allowMd5 ?? false);
    const { credentials } = ociCredentials(request);
    if (!request.streamRequested) log.info('stream_raw_images is false: streaming anyway (this agent keeps no image cache)');
    log.info({ id: request.id, urls: request.urls.length, disk_format: request.diskFormat, checksum: request.checksum?.algorithm, authorization: request.authorization !== undefined }, 'writing image');

    enter('disk', 'choosing the target disk');
    const found = await waitForRootDevice({
      runner: deps.runner, log, signal,
      selection: rootDeviceSelectionFromNode(node),
      attempts: deps.config.disk_wait_attempts,
      delaySeconds: deps.config.disk_wait_delay,
      includeLoop: deps.config.include_loop_devices,
    });
    device = found.device;
    log.info({ device: device.name, size: device.size }, 'disk chosen');

    enter('download', `writing image ${request.id} to ${device.name}`, { bytes_done: 0 });
    let lastProgress = 0;
    const ca = deps.config.ca_file ? await readFile(deps.config.ca_file, 'utf8').catch((err: unknown) => {
      throw new AgentError('CONFIG_INVALID', `Cannot read ca_file ${deps.config.ca_file}: ${(err as Error).message}`, { cause: err });
    }) : undefined;
    written = await writeArtifactToTarget({
      source: request.urls,
      target: device.name,
      runner: deps.runner,
      oci: deps.oci,
      signal, log,
      checksum: request.checksum,
      requireChecksum: true,
      headers: request.authorization ? { authorization: request.authorization } : undefined,
      credentials,
      platform: deps.platform,
      downloadSource: request.downloadSource,
      diskFormat: request.diskFormat,
      http: { insecure: deps.config.insecure, ...(ca ? { ca } : {}), ...deps.http },
      tempDir: deps.tempDir,
      freeSpace: deps.freeSpace,
      zstdPath: deps.zstdPath,
      onProgress: (p) => {
        // Each report is logged by the executor: every few seconds is enough.
        const now = performance.now();
        if (p.phase === 'download' && now - lastProgress < PROGRESS_EVERY_MS) return;
        lastProgress = now;
        ctx.reportProgress({
          phase: p.phase,
          message: p.phase === 'download'
            ? `downloaded ${Math.floor(p.bytesDownloaded / MiB)}${p.bytesTotal ? ` of ${Math.ceil(p.bytesTotal / MiB)}` : ''} MiB, wrote ${Math.floor(p.bytesWritten / MiB)} MiB`
            : p.phase === 'convert' ? 'converting qcow2 to raw with qemu-img' : 're-reading the partition table',
          bytes_done: p.bytesDownloaded,
          ...(p.bytesTotal !== undefined ? { bytes_total: p.bytesTotal } : {}),
          bytes_written: p.bytesWritten,
        });
      },
    });

    let configdriveResult: Record<string, unknown> | null = null;
    if (request.configdrive) {
      enter('configdrive', 'writing the config drive');
      configdriveResult = await deps.writeConfigDrive(device.name, request.configdrive, { signal, log });
    }

    enter('partitions', 'reading partition UUIDs');
    const uuids: Record<string, string> = {};
    try {
      Object.assign(uuids, partitionUuids(await readPartitionTable(deps.runner, device.name, device.size, signal)));
    } catch (err) {
      log.info({ err }, 'no readable partition table on the written image');
    }
    // IPA reports a whole-disk image's "root uuid" as the disk identifier.
    const identifier = await diskIdentifier(device.name);
    if (identifier) uuids['root uuid'] = identifier;
    deps.recordPartitionUuids(uuids);

    enter('done', `image (${request.id}) written to device ${device.name}`, {
      bytes_done: written.downloadedBytes, bytes_total: written.downloadedBytes, bytes_written: written.bytes,
    });
    return {
      result: `${name}: image (${request.id}) written to device ${device.name} root_uuid=${uuids['root uuid'] ?? 'None'}`,
      device: device.name,
      image: {
        id: request.id, source: written.source, digest: written.digest, disk_format: written.diskFormat, compression: written.compression,
        bytes: written.bytes, downloaded_bytes: written.downloadedBytes, checksum_verified: written.checksumVerified,
        ...(written.oci ? { oci: written.oci } : {}),
      },
      seconds: written.seconds,
      phases: written.phases,
      partition_uuids: uuids,
      configdrive: configdriveResult,
    };
  } catch (err) {
    const failure = toAgentError(err);
    log.error({ err: failure, phase, details: failure.details }, `${name} failed in phase ${phase}`);
    const cleanup: Record<string, unknown> = {};
    // writeArtifactToTarget already wiped on its own failures; later phases wipe here.
    if (device && written) cleanup.disk = await wipe(deps.runner, device, log);
    throw new AgentError(failure.code, `${name} failed in phase ${phase}: ${failure.message}`, {
      cause: failure,
      details: { ...failure.details, phase, ...(device ? { device: device.name } : {}), ...(Object.keys(cleanup).length ? { cleanup } : {}) },
    });
  }
}

async function wipe(runner: CommandRunner, device: BlockDevice, log: Logger): Promise<string> {
  try {
    await eraseDevicesMetadata({ runner, devices: [{ ...device, removable: false, read_only: false }], log });
    return 'wiped';
  } catch (err) {
    log.error({ err: new AgentError('DISK_WIPE_FAILED', `Wiping ${device.name} failed`, { cause: err }) }, 'disk state unknown');
    return describeError(toAgentError(err));
  }
}
