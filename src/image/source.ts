/**
 * Opening the first working URL of a list: `oci://` through the OCI client, `http(s)://` with
 * the supplied headers. A URL that cannot start is logged and the next one is tried; when all
 * fail, one IMAGE_DOWNLOAD_FAILED lists each URL and why.
 * @module
 */
import { AgentError, toAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { StreamCompression } from './decompress.ts';
import { openHttpSource, redactUrl, type OpenedSource } from './http-source.ts';
import { openOciSource } from './oci-source.ts';
import type { DiskFormat, WriteArtifactOptions, WriteArtifactResult } from './write.ts';

export interface Opened {
  url: string;
  kind: 'oci' | 'http';
  source: OpenedSource;
  compression?: StreamCompression | undefined;
  diskFormat?: DiskFormat | undefined;
  uncompressedSize?: number | undefined;
  ociDigest?: string | undefined;
  oci?: WriteArtifactResult['oci'];
}

export async function openFirst(options: WriteArtifactOptions, log: Logger | undefined): Promise<Opened> {
  const urls = typeof options.source === 'string' ? [options.source] : [...options.source];
  if (urls.length === 0) throw new AgentError('DEPLOY_ARGS_INVALID', 'No image URL given');
  const failures: { url: string; code: string; message: string }[] = [];
  let lastError: AgentError | undefined;
  for (const url of urls) {
    try {
      if (/^oci:\/\//i.test(url)) {
        if (!options.oci) throw new AgentError('INTERNAL', 'oci:// source without an OCI client');
        const src = await openOciSource(options.oci, url, {
          signal: options.signal, credentials: options.credentials, platform: options.platform, downloadSource: options.downloadSource,
        });
        return {
          url, kind: 'oci', source: src, compression: src.compression, diskFormat: src.diskFormat, uncompressedSize: src.uncompressedSize,
          ociDigest: src.digest,
          oci: { reference: src.image.podmanReference, manifestDigest: src.image.digest, blobDigest: src.digest, fileName: src.image.fileName },
        };
      }
      if (/^https?:\/\//i.test(url)) {
        if (options.requireChecksum && !options.checksum) {
          throw new AgentError('IMAGE_CHECKSUM_UNSUPPORTED', 'Image checksum is not available: give os_hash_algo and os_hash_value (or checksum) for http(s) image URLs');
        }
        const src = await openHttpSource(url, { ...options.http, signal: options.signal, headers: options.headers });
        return { url, kind: 'http', source: src };
      }
      throw new AgentError('DEPLOY_ARGS_INVALID', `Unsupported image URL scheme in ${redactUrl(url)} (oci://, https:// and http:// are supported)`);
    } catch (err) {
      const e = toAgentError(err);
      if (e.code === 'CANCELLED' || e.code === 'IMAGE_CHECKSUM_UNSUPPORTED') throw e;
      log?.warn({ url: redactUrl(url), err: e }, 'image URL failed; trying the next one');
      failures.push({ url: redactUrl(url), code: e.code, message: e.message });
      lastError = e;
    }
  }
  if (urls.length === 1 && lastError) throw lastError;
  throw new AgentError('IMAGE_DOWNLOAD_FAILED', `No image URL could be downloaded: ${failures.map((f) => `${f.url}: ${f.message}`).join('; ')}`, {
    cause: lastError, details: { attempts: failures },
  });
}
