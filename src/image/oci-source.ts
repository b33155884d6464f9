/**
 * `oci://` disk images resolved by the agent itself: tag → digest, platform (x86_64 ≡ amd64),
 * Ironic's `disktype` ranking, a one-layer artifact whose blob is streamed with its size and
 * digest verified on the fly (src/oci).
 * @module
 */
import { AgentError } from '../errors.ts';
import type { Credentials, DownloadSource, ImageInspection, OciClient, PullSource } from '../oci/index.ts';
import { mirrorsRegistriesConf, type MirrorEntry } from '../oci/mirrors.ts';
import type { StreamCompression } from './decompress.ts';
import type { OpenedSource } from './types.ts';

export interface OciSourceOptions {
  signal?: AbortSignal | undefined;
  credentials?: Credentials | undefined;
  platform?: { os?: string; architecture: string; variant?: string } | undefined;
  downloadSource?: DownloadSource | undefined;
  onBlobProgress?: ((bytes: number, total: number) => void) | undefined;
  /** The node's mirrors (`image_registry_mirrors`), applied over the agent's for this image only. */
  registryMirrors?: readonly MirrorEntry[] | undefined;
  /** Called when a blob source gives up and the next one continues the download. */
  onSourceChange?: ((source: PullSource, err: unknown) => void) | undefined;
}

export interface OpenedOciSource extends OpenedSource {
  size: number;
  image: ImageInspection;
  /** From the layer media type or title; undefined → sniff the bytes. */
  compression?: StreamCompression | undefined;
  /** From the `disktype` annotation; undefined → sniff the bytes. */
  diskFormat?: 'raw' | 'qcow2' | undefined;
  digest: string;
  /** Uncompressed size announced by an annotation, if any. */
  uncompressedSize?: number | undefined;
  /** The source that served the blob (`image.source` unless a source gave up mid-blob), read after the download. */
  servedBy: { source: PullSource };
}

export async function openOciSource(oci: OciClient, url: string, options: OciSourceOptions = {}): Promise<OpenedOciSource> {
  const overlay = options.registryMirrors?.length ? mirrorsRegistriesConf(options.registryMirrors, await oci.registries()) : undefined;
  const image = await oci.inspectImage(url, {
    kind: 'artifact',
    signal: options.signal,
    ...(overlay ? { registries: overlay } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.platform ? { platform: options.platform } : {}),
    ...(options.downloadSource ? { downloadSource: options.downloadSource } : {}),
  });
  const layer = image.layers[0];
  if (!layer || image.layers.length !== 1) {
    throw new AgentError('OCI_MANIFEST_INVALID', `${image.podmanReference} is not a one-file artifact`, { details: { layers: image.layers.length } });
  }
  // The sources a blob download may move through, in the client's order (see OciClient.blobSources);
  // `servedBy.source` is the one that served the end of the blob.
  const sources = await oci.blobSources(image, overlay);
  const servedBy = { source: image.source };
  // Iterated directly (no stream layer in between). close() aborts the request first: a pending
  // read must not hold up the generator's return until the network answers.
  const cancel = new AbortController();
  const chunks = await oci.openBlobChunks(image, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, {
    signal: options.signal ? AbortSignal.any([options.signal, cancel.signal]) : cancel.signal,
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(overlay ? { registries: overlay } : {}),
    onSource: (index: number, err: unknown) => {
      const source = sources[index];
      if (source) {
        servedBy.source = source;
        options.onSourceChange?.(source, err);
      }
    },
    ...(options.onBlobProgress ? { onProgress: (p: { bytes: number; total: number }) => options.onBlobProgress?.(p.bytes, p.total) } : {}),
  });
  return {
    chunks,
    size: layer.size,
    image,
    servedBy,
    compression: image.compression,
    diskFormat: image.diskFormat,
    digest: layer.digest,
    uncompressedSize: layer.uncompressedSize,
    close: async () => {
      cancel.abort();
      await chunks.return(undefined).catch(() => undefined);
    },
  };
}
