/**
 * Turning the conductor's `configdrive` value into an image file: base64 of a gzipped ISO (what
 * Ironic sends), base64 of a raw image, or an http(s) URL to either — where, as in IPA, a body
 * that is not base64 is taken as raw bytes. Decoding streams into a private temp dir and stops
 * as soon as the decompressed size passes the limit.
 * @module
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { AgentError, isAgentError } from '../errors.ts';
import type { HttpDownload } from '../io/http.ts';
import { peek } from '../io/peek.ts';
import { MiB } from '../io/sizes.ts';
import { redactUrl } from '../io/url.ts';
import type { Logger } from '../log/index.ts';
import { downloadConfigDrive, isConfigDriveUrl } from './download.ts';
import { ISO_PVD_OFFSET, isConfigDriveLabel, probeImage, type ImageProbe } from './probe.ts';
import { decodeBase64, gunzip, isGzip, limitBytes, looksLikeBase64, sliceString, tooLarge } from './stream.ts';

export const MAX_CONFIG_DRIVE_BYTES = 64 * MiB;
export const DEFAULT_FETCH_TIMEOUT_MS = 60_000;
/** A config drive URL's whole download, however steadily the bytes trickle in. */
export const DEFAULT_FETCH_DEADLINE_MS = 120_000;
const SNIFF_BYTES = 4096;

export interface LoadConfigDriveOptions {
  signal?: AbortSignal | undefined;
  log: Logger;
  /** Largest image accepted after decoding and decompression (default 64 MiB, as IPA). */
  maxBytes?: number | undefined;
  /** URL downloads: connect and between-data timeout (default 60 s, as IPA). */
  fetchTimeoutMs?: number | undefined;
  /** URL downloads: limit for the whole download (default DEFAULT_FETCH_DEADLINE_MS). */
  fetchDeadlineMs?: number | undefined;
  dispatcher?: Dispatcher | undefined;
  /** URL downloads: skip TLS verification (`ipa-insecure`). */
  insecure?: boolean | undefined;
  /** URL downloads: trusted CA certificates (PEM: the contents of `ca_file`), instead of the system's. */
  ca?: string | undefined;
  /** Parent of the private temp dir (default: the OS temp dir). */
  tmpDir?: string | undefined;
}

/** A decoded, validated config drive image on disk; `dispose()` removes its temp dir. */
export interface LoadedConfigDrive extends ImageProbe {
  path: string;
  /** The private (0700) temp dir holding `path`; other temp files of this config drive go here too. */
  dir: string;
  size: number;
  /** Size rounded up to MiB, as IPA reports it. */
  sizeMiB: number;
  source: 'inline' | 'url';
  encoding: { base64: boolean; gzip: boolean };
  dispose(): Promise<void>;
}

// Everything after the source: base64 (or raw) → gunzip (or raw) → size limit → file. Each
// stage's for-await closes the stage before it on failure. An inline value is always base64;
// a downloaded body is sniffed.
async function decodeToFile(
  input: string | AsyncIterable<Buffer>,
  file: string,
  options: { maxBytes: number; signal: AbortSignal | undefined; log: Logger },
): Promise<{ base64: boolean; gzip: boolean }> {
  const encoding = { base64: true, gzip: false };
  async function* maybeBase64(): AsyncGenerator<Buffer> {
    if (typeof input === 'string') return yield* decodeBase64(sliceString(input));
    const { head, all } = await peek(input, SNIFF_BYTES);
    encoding.base64 = looksLikeBase64(head.subarray(0, SNIFF_BYTES));
    if (encoding.base64) return yield* decodeBase64(all);
    options.log.warn('the downloaded config drive is not base64 encoded, assuming binary');
    yield* all;
  }
  async function* maybeGunzip(): AsyncGenerator<Buffer> {
    const { head, all } = await peek(maybeBase64(), 2);
    encoding.gzip = isGzip(head);
    yield* encoding.gzip ? gunzip(all) : all;
  }
  const handle = await open(file, 'wx', 0o600);
  try {
    for await (const chunk of limitBytes(maybeGunzip(), options.maxBytes, () => encoding.gzip)) {
      options.signal?.throwIfAborted();
      await handle.write(chunk);
    }
  } finally {
    await handle.close();
  }
  return encoding;
}

function invalid(message: string, details: Record<string, unknown> = {}): AgentError {
  return new AgentError('CONFIGDRIVE_INVALID', message, { details });
}

// Ironic builds the ISO with `-V config-2`; cloud-init only looks at config-2/CONFIG-2 labels.
function validateImage(probe: ImageProbe | null, size: number): ImageProbe {
  if (size === 0) throw invalid('Config drive is empty after decoding');
  if (!probe) {
    throw invalid(`Config drive is neither an ISO 9660 image (no primary volume descriptor "\\x01CD001" at byte ${ISO_PVD_OFFSET}) nor a FAT image`, {
      size_bytes: size,
    });
  }
  if (!isConfigDriveLabel(probe.label)) {
    const what = probe.format === 'iso9660' ? 'ISO 9660 volume id' : 'FAT label';
    throw invalid(`Config drive ${what} is ${JSON.stringify(probe.label)}, expected "config-2" (case-insensitive)`, {
      format: probe.format,
      label: probe.label,
    });
  }
  if (probe.fsBytes > size) {
    throw invalid(`Config drive ${probe.format} image is truncated: the filesystem spans ${probe.fsBytes} bytes, the image has ${size}`, {
      fs_bytes: probe.fsBytes,
      size_bytes: size,
    });
  }
  return probe;
}

function cancelledOr(err: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted && !(isAgentError(err) && err.code === 'CANCELLED')) {
    return new AgentError('CANCELLED', 'Loading the config drive was cancelled', { cause: signal.reason ?? err });
  }
  return err;
}

/**
 * Decode and validate a config drive into a temp file.
 * @example
 * const drive = await loadConfigDrive(args.configdrive, { signal, log });
 * try { console.log(drive.path, drive.sizeMiB, drive.format); } finally { await drive.dispose(); }
 */
export async function loadConfigDrive(value: string, options: LoadConfigDriveOptions): Promise<LoadedConfigDrive> {
  const maxBytes = options.maxBytes ?? MAX_CONFIG_DRIVE_BYTES;
  const trimmed = value.trim();
  if (trimmed === '') throw invalid('Config drive is empty');
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'bootc-agent-configdrive-'));
  const dispose = () => rm(dir, { recursive: true, force: true });
  const path = join(dir, 'configdrive.img');
  const url = isConfigDriveUrl(trimmed);
  let download: HttpDownload | undefined;
  try {
    if (url) {
      options.log.info({ url: redactUrl(trimmed) }, 'downloading the config drive');
      download = await downloadConfigDrive(trimmed, {
        signal: options.signal,
        timeoutMs: options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
        deadlineMs: options.fetchDeadlineMs ?? DEFAULT_FETCH_DEADLINE_MS,
        // Base64 of a gzipped image can be larger than the image (4/3, plus line breaks); even
        // base64 of an incompressible gzip stays under this, so a longer body cannot decode to
        // an image within the limit.
        maxBytes: Math.ceil(maxBytes * 1.5) + MiB,
        dispatcher: options.dispatcher,
        insecure: options.insecure,
        ca: options.ca,
      });
    }
    const encoding = await decodeToFile(download ? download.chunks : trimmed, path, { maxBytes, signal: options.signal, log: options.log });
    const handle = await open(path, 'r');
    const size = (await handle.stat()).size;
    await handle.close();
    const sizeMiB = Math.ceil(size / MiB);
    if (size > maxBytes) throw tooLarge(maxBytes, size, true);
    const probe = validateImage(await probeImage(path), size);
    options.log.info({ size_mib: sizeMiB, format: probe.format, label: probe.label, ...encoding }, 'config drive decoded');
    return { ...probe, path, dir, size, sizeMiB, source: url ? 'url' : 'inline', encoding, dispose };
  } catch (err) {
    await dispose().catch((cleanupErr: unknown) => options.log.warn({ err: cleanupErr, dir }, 'could not remove the config drive temp dir'));
    throw cancelledOr(err, options.signal);
  } finally {
    await download?.close();
  }
}
