/**
 * `writeArtifactToTarget`: one image from the first working URL (`oci://`, `https://`,
 * `http://`) to a block device or a file — checksum verified while streaming, decompressed on
 * the fly (gzip in-process; a raw zstd image is written by `zstd` itself, straight to the
 * target), written in constant memory with backpressure (O_DIRECT on block devices), fsynced,
 * partitions re-read. qcow2 goes through a temporary copy and `qemu-img convert`. A disk that was
 * written to is wiped (metadata erased) when anything fails afterwards.
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eraseDevicesMetadata, type BlockDevice } from '../disk/index.ts';
import { AgentError, describeError, isAgentError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import type { Credentials, DownloadSource, OciClient } from '../oci/index.ts';
import { ChecksumVerifier, type ExpectedChecksum } from './checksum.ts';
import { decompress, isQcow2, sniffCompression, zstdHead, type StreamCompression } from './decompress.ts';
import { redactUrl, type HttpSourceOptions } from './http-source.ts';
import { gcEvery } from '../io/gc.ts';
import { closeQuietly, peek, type Peeked } from '../io/peek.ts';
import { qemuImgConvert, qemuImgInfo, statfsFreeSpace, tempSpaceError, TEMP_RESERVE_BYTES, type FreeSpace } from './qcow2.ts';
import { openFirst } from './source.ts';
import { describeTarget, rereadPartitions, syncPath, tooLarge, writeChunks, writeZstdToTarget, type TargetInfo } from './target.ts';
import { PhaseClock, timedOutput, type Phases } from './timing.ts';

export type DiskFormat = 'raw' | 'qcow2';

export interface WriteProgress {
  phase: 'download' | 'convert' | 'partitions';
  /** Bytes received from the source (compressed, as downloaded). */
  bytesDownloaded: number;
  /** Download size, when the source announced it. */
  bytesTotal?: number | undefined;
  /** Bytes written to the target (or to the temporary qcow2 copy). */
  bytesWritten: number;
}

export interface WriteArtifactOptions {
  /** `oci://…`, `https://…` or `http://…`; a list is tried in order until one starts. */
  source: string | readonly string[];
  /** A block device (written in place) or a file path (created or truncated). */
  target: string;
  runner: CommandRunner;
  /** Needed for `oci://` sources. */
  oci?: OciClient | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: WriteProgress) => void) | undefined;
  log?: Logger | undefined;
  /** Verified over the downloaded bytes; OCI blobs are also verified against their digest. */
  checksum?: ExpectedChecksum | undefined;
  /** Fail when an http(s) source has no checksum (the write_image step sets this). */
  requireChecksum?: boolean | undefined;
  /** Extra request headers for http(s) sources (e.g. `authorization`). */
  headers?: Record<string, string> | undefined;
  /** OCI: credentials for the image's registry. */
  credentials?: Credentials | undefined;
  /** OCI: wanted platform (default: this host). */
  platform?: { os?: string; architecture: string; variant?: string } | undefined;
  /** OCI: Ironic's `image_download_source` for the disktype ranking (default `http`: raw first). */
  downloadSource?: DownloadSource | undefined;
  /** Declared disk format; qcow2 content is detected by its magic bytes either way. */
  diskFormat?: DiskFormat | undefined;
  /** http(s) transport: dispatcher, CA, insecure, timeouts, retries. */
  http?: Omit<HttpSourceOptions, 'signal' | 'headers'> | undefined;
  /** Where a qcow2 image's temporary copy is kept (default: os.tmpdir(), RAM in a ramdisk). */
  tempDir?: string | undefined;
  freeSpace?: FreeSpace | undefined;
  /** Erase a block device's metadata (or delete a file) after a failure once writing began (default true). */
  wipeOnFailure?: boolean | undefined;
  zstdPath?: string | undefined;
  /**
   * zstd raw images: let `zstd` write the decompressed bytes straight to the target (default
   * true); false pipes them through this process like gzip.
   */
  zstdDirect?: boolean | undefined;
}

export interface WriteArtifactResult {
  /** Bytes now on the target (raw size; for qcow2 the virtual size). */
  bytes: number;
  /** Bytes received from the source. */
  downloadedBytes: number;
  /** `algorithm:hex` of the downloaded bytes: the verified checksum, the OCI blob digest, or a sha256 computed here. */
  digest: string;
  /** Wall time of the whole call. */
  seconds: number;
  /** Seconds each stage held the pipeline up (they overlap; see PhaseClock). */
  phases: Phases;
  /** The URL that was used (query and credentials redacted). */
  source: string;
  target: TargetInfo;
  diskFormat: DiskFormat;
  compression: StreamCompression;
  checksumVerified: boolean;
  oci?: { reference: string; manifestDigest: string; blobDigest: string; fileName?: string | undefined } | undefined;
  /** Commands that re-read the partition table successfully (block devices). */
  partitionsReread: string[];
}

const PROGRESS_INTERVAL_MS = 250;
// Compressed bytes handed to the qcow2 sniff: a zstd block is at most 128 KiB, so its first
// block (and thus the first decompressed bytes) is always inside.
const ZSTD_SNIFF_BYTES = 256 * 1024;
// Downloaded bytes between two scavenges (see gc.ts): bounds the dead network buffers held
// (every 1 MiB: ~3 MiB less peak RSS than every 2 MiB; the CPU difference was within this VM's
// noise, npm run bench, raw).
const GC_EVERY_BYTES = 1024 * 1024;

// A half-written target must not look like a good one: erase a disk's metadata, delete a file.
async function wipeTarget(target: TargetInfo, runner: CommandRunner, log: Logger | undefined): Promise<string> {
  try {
    if (target.kind === 'file') {
      await rm(target.path, { force: true });
      return 'deleted';
    }
    const device = { name: target.path, removable: false, read_only: false } as BlockDevice;
    await eraseDevicesMetadata({ runner, devices: [device], ...(log ? { log } : {}) });
    log?.info({ device: target.path }, 'disk wiped after the failed image write');
    return 'wiped';
  } catch (err) {
    const e = new AgentError('DISK_WIPE_FAILED', `Wiping ${target.path} after the failed image write failed too`, { cause: err });
    log?.error({ err: e }, 'target state unknown');
    return describeError(toAgentError(err));
  }
}

/** Download, verify, decompress and write one image; see the module comment. */
export async function writeArtifactToTarget(options: WriteArtifactOptions): Promise<WriteArtifactResult> {
  const started = performance.now();
  const { runner, signal, log } = options;
  const clock = new PhaseClock();
  const target = await describeTarget(options.target, runner, signal);
  const opened = await openFirst(options, log);
  const { url, source } = opened;
  const shownUrl = redactUrl(url);
  const verifier = options.checksum ? new ChecksumVerifier(options.checksum) : undefined;
  const sha256 = !verifier && !opened.ociDigest ? createHash('sha256') : undefined;
  let downloaded = 0;
  let written = 0;
  let complete = false;
  let touched = false;
  let lastReport = 0;
  let phase: WriteProgress['phase'] = 'download';
  const report = (force = false) => {
    const now = performance.now();
    if (!options.onProgress || (!force && now - lastReport < PROGRESS_INTERVAL_MS)) return;
    lastReport = now;
    options.onProgress({ phase, bytesDownloaded: downloaded, bytesTotal: source.size, bytesWritten: written });
  };

  const collect = gcEvery(GC_EVERY_BYTES);
  // One generator for the whole download side (wait, hash, count, report): each layer of async
  // iteration costs per chunk, and TLS hands over 16 KiB chunks (65536 per GiB).
  async function* hashed(): AsyncGenerator<Buffer> {
    const iterator = source.chunks[Symbol.asyncIterator]();
    try {
      for (;;) {
        const t0 = performance.now();
        const next = await iterator.next();
        const t1 = performance.now();
        clock.add('network', t1 - t0);
        if (next.done) break;
        const chunk = next.value;
        if (verifier || sha256) {
          verifier?.update(chunk);
          sha256?.update(chunk);
          clock.add('hashing', performance.now() - t1);
        }
        downloaded += chunk.length;
        collect(downloaded);
        report();
        yield chunk;
      }
    } finally {
      await iterator.return?.();
    }
    complete = true;
  }

  let input: Peeked | undefined;
  let sniffed: Peeked | undefined;
  let body: Peeked | undefined;
  try {
    input = await peek(hashed(), 8);
    if (input.head.length === 0) throw new AgentError('IMAGE_DOWNLOAD_FAILED', `The image at ${shownUrl} is empty`, { details: { url: shownUrl } });
    const declared = opened.compression;
    const compression: StreamCompression = declared === 'gzip' || declared === 'zstd' || declared === 'xz' ? declared : sniffCompression(input.head);
    const declaredFormat = options.diskFormat ?? opened.diskFormat;
    let compressed = input.all;
    // zstd writes a raw image straight to the target (no decompressed byte through this process);
    // qcow2 is sniffed first by decompressing just the stream's beginning.
    let zstdDirect = false;
    if (compression === 'zstd' && declaredFormat !== 'qcow2' && options.zstdDirect !== false) {
      sniffed = await peek(input.all, ZSTD_SNIFF_BYTES);
      compressed = sniffed.all;
      const head = await zstdHead(sniffed.head, 4, { signal, zstdPath: options.zstdPath });
      zstdDirect = head !== undefined && !isQcow2(head);
    }
    const output = compression === 'none' || zstdDirect ? compressed : timedOutput(decompress(compressed, compression, { signal, zstdPath: options.zstdPath }), clock);
    body = zstdDirect ? undefined : await peek(output, 4);
    const format: DiskFormat = body && isQcow2(body.head) ? 'qcow2' : 'raw';
    if (declaredFormat === 'qcow2' && format !== 'qcow2') {
      throw new AgentError('IMAGE_FORMAT_UNSUPPORTED', `The image at ${shownUrl} is declared qcow2 but does not start with the qcow2 magic`, { details: { url: shownUrl } });
    }
    if (declaredFormat === 'raw' && format === 'qcow2') log?.warn({ url: shownUrl }, 'image declared raw is qcow2: converting it');
    const knownSize = compression === 'none' ? source.size : opened.uncompressedSize;
    const onWritten = (n: number) => {
      written = n;
      report();
    };

    let bytes: number;
    if (format === 'raw') {
      if (target.sizeBytes !== undefined && knownSize !== undefined && knownSize > target.sizeBytes) throw tooLarge(target, knownSize, 'raw size');
      // A file is truncated when opened: from then on a partial file is worse than none.
      if (target.kind === 'file') touched = true;
      const writeOptions = {
        clock, onWritten,
        limit: target.sizeBytes,
        onLimit: (n: number) => tooLarge(target, n, 'at least'),
        onFirstWrite: () => { touched = true; },
      };
      bytes = body
        ? await writeChunks(target.path, target.kind, body.all, writeOptions)
        : await writeZstdToTarget(target.path, target.kind, compressed, { ...writeOptions, signal, zstdPath: options.zstdPath });
    } else if (!body) {
      throw new AgentError('INTERNAL', 'qcow2 without a decompressed stream');
    } else {
      const tempDir = options.tempDir ?? tmpdir();
      const free = await (options.freeSpace ?? statfsFreeSpace)(tempDir);
      const available = Math.max(0, free - TEMP_RESERVE_BYTES);
      if (knownSize !== undefined && knownSize > available) throw tempSpaceError(tempDir, knownSize, free, true);
      const dir = await mkdtemp(join(tempDir, 'bootc-agent-qcow2-'));
      try {
        const copy = join(dir, 'image.qcow2');
        log?.info({ temp_copy: copy, free_bytes: free }, 'qcow2 image: keeping a temporary copy for qemu-img convert');
        try {
          await writeChunks(copy, 'file', body.all, { clock, onWritten, limit: available, onLimit: (n) => tempSpaceError(tempDir, n, free, false) });
        } catch (err) {
          if (isAgentError(err) && err.details.errno === 'ENOSPC') throw tempSpaceError(tempDir, written, free, false);
          throw err;
        }
        if (!complete) throw new AgentError('IMAGE_WRITE_FAILED', 'The decompressed image ended before the download did');
        verifier?.verify(shownUrl);
        const info = await qemuImgInfo(runner, copy, signal);
        if (target.sizeBytes !== undefined && info.virtualSize > target.sizeBytes) throw tooLarge(target, info.virtualSize, 'qcow2 virtual size');
        phase = 'convert';
        report(true);
        touched = true; // qemu-img creates/truncates a file target and writes a device in place
        await clock.time('convert', () => qemuImgConvert(runner, copy, target.path, signal));
        await clock.time('sync', () => syncPath(target.path, target.kind));
        bytes = info.virtualSize;
        written = bytes;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    if (!complete) throw new AgentError('IMAGE_WRITE_FAILED', 'The decompressed image ended before the download did');
    const digest = verifier ? verifier.verify(shownUrl) : opened.ociDigest ?? `sha256:${sha256!.digest('hex')}`;
    let partitionsReread: string[] = [];
    if (target.kind === 'block') {
      phase = 'partitions';
      report(true);
      partitionsReread = await rereadPartitions(runner, target.path, log, signal);
    }
    report(true);
    return {
      bytes, downloadedBytes: downloaded, digest,
      seconds: Math.round(performance.now() - started) / 1000,
      phases: clock.seconds(),
      source: opened.kind === 'oci' ? url : shownUrl,
      target, diskFormat: format, compression,
      checksumVerified: verifier !== undefined,
      ...(opened.oci ? { oci: opened.oci } : {}),
      partitionsReread,
    };
  } catch (err) {
    const failure = toAgentError(err);
    // Log the first error before cleanup so a cleanup failure can never hide it.
    log?.error({ err: failure, target: target.path, written }, 'image write failed');
    const cleanup = touched && options.wipeOnFailure !== false ? await wipeTarget(target, runner, log) : 'untouched';
    throw new AgentError(failure.code, failure.message, {
      cause: failure,
      details: { ...failure.details, target: target.path, source: opened.kind === 'oci' ? url : shownUrl, bytes_written: written, bytes_downloaded: downloaded, cleanup },
    });
  } finally {
    // The source first: a read still pending inside the pipeline then fails instead of waiting.
    await source.close().catch(() => undefined);
    await closeQuietly(body);
    await closeQuietly(sniffed);
    await closeQuietly(input);
  }
}
