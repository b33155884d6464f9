/**
 * `writeArtifactToTarget`: one image from the first working URL (`oci://`, `https://`,
 * `http://`) to a block device or a file, in stages: open the source (./source.ts); meter the
 * download, the checksum verified while streaming (./meter.ts); tell compression and format
 * (./sniff.ts: gzip decompressed in-process, a raw zstd image left for `zstd` to write itself);
 * write a raw image in constant memory with backpressure (./write-chunks.ts, O_DIRECT on block
 * devices; ./write-zstd.ts) or a qcow2 image through a temporary copy and `qemu-img convert`
 * (./write-qcow2.ts); finish: fsynced, digest checked, partitions re-read. A disk that was
 * written to is wiped (metadata erased) when anything fails afterwards.
 * @module
 */
import { rm } from 'node:fs/promises';
import { syncKernelPartitions, wipeDisk } from '../disk/index.ts';
import { AgentError, describeError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { closeQuietly, type Peeked } from '../io/peek.ts';
import { redactUrl } from '../io/url.ts';
import { createSilentLogger, type Logger } from '../log/index.ts';
import { WriteJob } from './job.ts';
import { meterDownload, type MeteredDownload } from './meter.ts';
import { sniffImage, type SniffedImage } from './sniff.ts';
import { openFirst, type Opened } from './source.ts';
import { describeTarget, tooLarge, type TargetInfo } from './target.ts';
import type { TempCopy, WriteArtifactOptions, WriteArtifactResult } from './types.ts';
import { writeChunks } from './write-chunks.ts';
import { writeQcow2ViaTempCopy } from './write-qcow2.ts';
import { writeZstdToTarget } from './write-zstd.ts';

export type { DiskFormat, WriteArtifactOptions, WriteArtifactResult, WriteProgress } from './types.ts';

// A half-written target must not look like a good one: erase a disk's metadata, delete a file.
async function wipeTarget(target: TargetInfo, runner: CommandRunner, log: Logger): Promise<string> {
  if (target.kind === 'block') return wipeDisk(runner, target.path, { log });
  try {
    await rm(target.path, { force: true });
    return 'deleted';
  } catch (err) {
    log.error({ err, target: target.path }, 'could not delete the partly written file');
    return describeError(toAgentError(err));
  }
}

// A raw image: by zstd itself, or from the decompressed stream (O_DIRECT on block devices).
async function writeRaw(job: WriteJob, target: TargetInfo, image: SniffedImage & { format: 'raw' }, knownSize: number | undefined, options: WriteArtifactOptions): Promise<number> {
  if (target.sizeBytes !== undefined && knownSize !== undefined && knownSize > target.sizeBytes) throw tooLarge(target, knownSize, 'raw size');
  // A file is truncated when opened: from then on a partial file is worse than none.
  if (target.kind === 'file') job.touched = true;
  const writeOptions = {
    clock: job.clock,
    onWritten: job.onWritten,
    limit: target.sizeBytes,
    onLimit: (n: number) => tooLarge(target, n, 'at least'),
    onFirstWrite: () => { job.touched = true; },
  };
  return image.body
    ? writeChunks(target.path, target.kind, image.body.all, writeOptions)
    : writeZstdToTarget(target.path, target.kind, image.compressed, { ...writeOptions, signal: options.signal, zstdPath: options.zstdPath });
}

// After the write: the whole download verified, then the kernel's partitions made to match the
// image's table (an image without one leaves the kernel with none).
async function finish(job: WriteJob, target: TargetInfo, download: MeteredDownload, options: WriteArtifactOptions): Promise<{ digest: string; partitionsReread: string[] }> {
  job.checkComplete();
  const digest = download.digest();
  let partitionsReread: string[] = [];
  if (target.kind === 'block') {
    job.enter('partitions');
    ({ steps: partitionsReread } = await syncKernelPartitions(options.runner, target.path, { mode: 'lenient', signal: options.signal, log: options.log }));
  }
  job.report(true);
  return { digest, partitionsReread };
}

// The error a failed write ends with, once the target is wiped (if it was touched).
async function failed(err: unknown, job: WriteJob, target: TargetInfo, shownSource: string, options: WriteArtifactOptions): Promise<AgentError> {
  const { log } = options;
  const failure = toAgentError(err);
  // Log the first error before cleanup so a cleanup failure can never hide it.
  log?.error({ err: failure, target: target.path, written: job.written }, 'image write failed');
  const cleanup = job.touched && options.wipeOnFailure !== false ? await wipeTarget(target, options.runner, log ?? createSilentLogger()) : 'untouched';
  return new AgentError(failure.code, failure.message, {
    cause: failure,
    details: { ...failure.details, target: target.path, source: shownSource, bytes_written: job.written, bytes_downloaded: job.downloaded, cleanup },
  });
}

// Download, sniff, write, finish: the result's fields that depend on the image.
async function writeFromSource(job: WriteJob, target: TargetInfo, opened: Opened, options: WriteArtifactOptions, peeks: Peeked[]) {
  const shownUrl = redactUrl(opened.url);
  const download = meterDownload(job, opened, options.checksum, shownUrl);
  const image = await sniffImage(download.chunks, { opened, options, clock: job.clock, log: options.log, shownUrl, peeks });
  const knownSize = image.compression === 'none' ? opened.source.size : opened.uncompressedSize;
  let tempCopy: TempCopy | undefined;
  const bytes = image.format === 'raw'
    ? await writeRaw(job, target, image, knownSize, options)
    : await writeQcow2ViaTempCopy({
        job, target, body: image.body.all, knownSize, verify: () => download.digest(), shownUrl, peeks,
        runner: options.runner, signal: options.signal, log: options.log, tempDir: options.tempDir, freeSpace: options.freeSpace,
        tempCopy: options.tempCopy, meminfo: options.meminfo, onScratch: options.onScratch,
        onTempCopy: (copy) => {
          tempCopy = copy;
          options.onTempCopy?.(copy);
        },
      });
  const { digest, partitionsReread } = await finish(job, target, download, options);
  return { bytes, digest, partitionsReread, diskFormat: image.format, compression: image.compression, tempCopy };
}

/** Download, verify, decompress and write one image; see the module comment. */
export async function writeArtifactToTarget(options: WriteArtifactOptions): Promise<WriteArtifactResult> {
  const started = performance.now();
  const target = await describeTarget(options.target, options.runner, options.signal);
  const opened = await openFirst(options, options.log);
  const shownSource = opened.kind === 'oci' ? opened.url : redactUrl(opened.url);
  const job = new WriteJob(options.onProgress, opened.source.size);
  const peeks: Peeked[] = [];
  try {
    const { bytes, digest, diskFormat, compression, partitionsReread, tempCopy } = await writeFromSource(job, target, opened, options, peeks);
    return {
      bytes, downloadedBytes: job.downloaded, digest,
      seconds: Math.round(performance.now() - started) / 1000,
      phases: job.clock.seconds(),
      source: shownSource,
      target, diskFormat, compression,
      checksumVerified: options.checksum !== undefined,
      ...(opened.oci ? { oci: opened.oci } : {}),
      ...(tempCopy ? { tempCopy } : {}),
      partitionsReread,
    };
  } catch (err) {
    throw await failed(err, job, target, shownSource, options);
  } finally {
    // The source first: a read still pending inside the pipeline then fails instead of waiting.
    await opened.source.close().catch(() => undefined);
    for (const peeked of peeks.reverse()) await closeQuietly(peeked);
  }
}
