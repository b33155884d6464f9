/**
 * Opening the first working URL of a list: `oci://` through the OCI client, `http(s)://`
 * through the downloader (src/io/http.ts) as IPA's `_download_with_proxy` fetches an image: one
 * GET, status 200 expected, connection errors and 5xx retried a few times, the conductor's
 * `Authorization` header sent as is. A URL that cannot start is logged and the next one is
 * tried; when all fail, one IMAGE_DOWNLOAD_FAILED lists each URL and why.
 * @module
 */
import { AgentError, toAgentError } from '../errors.ts';
import { httpDownload } from '../io/http.ts';
import { redactUrl } from '../io/url.ts';
import type { Logger } from '../log/index.ts';
import type { StreamCompression } from './decompress.ts';
import { openOciSource } from './oci-source.ts';
import type { DiskFormat, OpenedSource, WriteArtifactOptions, WriteArtifactResult } from './types.ts';

/** Retries of an http(s) image URL after a connection error or a 5xx, when the caller sets none. */
export const HTTP_IMAGE_RETRIES = 3;

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

async function openOci(options: WriteArtifactOptions, url: string): Promise<Opened> {
  if (!options.oci) throw new AgentError('INTERNAL', 'oci:// source without an OCI client');
  const src = await openOciSource(options.oci, url, {
    signal: options.signal, credentials: options.credentials, platform: options.platform, downloadSource: options.downloadSource,
    registryMirrors: options.registryMirrors, onSourceChange: (s, err) => options.log?.warn({ source: s.registry, err }, 'image blob continues on the next source'),
  });
  return {
    url, kind: 'oci', source: src, compression: src.compression, diskFormat: src.diskFormat, uncompressedSize: src.uncompressedSize,
    ociDigest: src.digest,
    oci: {
      reference: src.image.podmanReference, manifestDigest: src.image.digest, blobDigest: src.digest, fileName: src.image.fileName, signatures: src.image.signatures,
      // Read when the result is built, after the download: a mirror may have handed over mid-blob.
      get source() { return { registry: src.servedBy.source.registry, repository: src.servedBy.source.repository, mirror: src.servedBy.source.mirror }; },
    },
  };
}

async function openHttp(options: WriteArtifactOptions, url: string): Promise<Opened> {
  if (options.requireChecksum && !options.checksum) {
    throw new AgentError('IMAGE_CHECKSUM_UNSUPPORTED', 'Image checksum is not available: give os_hash_algo and os_hash_value (or checksum) for http(s) image URLs');
  }
  const source = await httpDownload(url, {
    ...options.http,
    retries: options.http?.retries ?? HTTP_IMAGE_RETRIES,
    subject: 'the image', errorCode: 'IMAGE_DOWNLOAD_FAILED', okStatus: 200,
    signal: options.signal, headers: options.headers,
  });
  return { url, kind: 'http', source };
}

export async function openFirst(options: WriteArtifactOptions, log: Logger | undefined): Promise<Opened> {
  const urls = typeof options.source === 'string' ? [options.source] : [...options.source];
  if (urls.length === 0) throw new AgentError('DEPLOY_ARGS_INVALID', 'No image URL given');
  const failures: { url: string; code: string; message: string }[] = [];
  let lastError: AgentError | undefined;
  for (const url of urls) {
    try {
      if (/^oci:\/\//i.test(url)) return await openOci(options, url);
      if (/^https?:\/\//i.test(url)) return await openHttp(options, url);
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
