/**
 * `inspectImage`: resolve, select the manifest for this platform the way Ironic does, classify it
 * (bootc image or artifact), and report sizes for admission checks — without pulling layers.
 * @module
 */
import { AgentError } from '../errors.ts';
import { openBlobStream } from './blob.ts';
import type { ManifestDocument } from './manifest-parse.ts';
import { fetchManifest } from './manifest-fetch.ts';
import { formatPlatform, hostPlatform, normalizePlatform, platformScore, type PlatformSpec } from './platform.ts';
import { toPodmanReference, withDigest, type ImageReference } from './reference.ts';
import type { PullSource } from './registries-conf.ts';
import type { CallOptions, ImageResolver, ResolvedImage } from './resolver.ts';
import type { SignatureVerification } from './signatures/index.ts';
import {
  compressionOf, diskFormatOf, disktypeRank, isArtifactManifest, rankCandidates, safeFileName,
  type Compression, type DownloadSource, type IndexCandidate,
} from './select.ts';
import { ImageConfig, INDEX_TYPES, MANIFEST_TYPES, MEDIA_TYPES, type Descriptor, type ImageIndex } from './schemas.ts';
import type { RegistrySession } from './session.ts';

export type ImageKind = 'bootc-image' | 'artifact';

/** Layer annotations read as uncompressed sizes. Not standardised: conventions, configurable. */
export const DEFAULT_UNCOMPRESSED_SIZE_ANNOTATIONS = ['org.opencontainers.image.uncompressed-size', 'io.github.containers.uncompressed-size'];
const MAX_INDEX_DEPTH = 4;
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export interface InspectOptions extends CallOptions {
  /** Wanted platform (default: this host, linux). `x86_64`/`aarch64` are accepted. */
  platform?: { os?: string; architecture: string; variant?: string };
  /** Only accept this kind (bootc deploy: `bootc-image`; kernel/ramdisk/disk images: `artifact`). */
  kind?: ImageKind;
  /** Ironic's `image_download_source` for `disktype` ranking (default `http`: raw first). */
  downloadSource?: DownloadSource;
  uncompressedSizeAnnotations?: readonly string[];
}

export interface LayerInfo {
  digest: string;
  mediaType: string;
  size: number;
  uncompressedSize?: number;
  annotations: Record<string, string>;
}

export interface ImageInspection {
  /** The logical reference pinned to the selected manifest's digest. */
  reference: ImageReference;
  /** The digest the reference resolved to (an index digest when it is multi-platform). */
  resolvedDigest: string;
  /** The selected manifest's digest. */
  digest: string;
  mediaType: string;
  kind: ImageKind;
  platform?: PlatformSpec;
  artifactType?: string;
  disktype?: string;
  diskFormat?: 'raw' | 'qcow2';
  config: Descriptor;
  /** Image config facts (bootc images): platform and labels such as `containers.bootc`. */
  imageConfig?: { architecture?: string; os?: string; variant?: string; labels: Record<string, string> };
  layers: LayerInfo[];
  /** Sum of the layers' compressed sizes (what will be downloaded, config excluded). */
  totalCompressedSize: number;
  /** Sum of uncompressed sizes, when every layer announces one. */
  totalUncompressedSize?: number;
  /** Artifacts: safe file name from `org.opencontainers.image.title`. */
  fileName?: string;
  /** Artifacts: compression of the single layer. */
  compression?: Compression;
  /** Where the content is served from (mirror or primary). */
  source: PullSource;
  /** `host/name@digest` for podman (never `oci://`). */
  podmanReference: string;
  /**
   * The signatures policy.json required, verified for `resolvedDigest` (which binds `digest`);
   * absent when the policy asked for none.
   */
  signatures?: SignatureVerification[];
}

async function readConfig(session: RegistrySession, d: Descriptor, signal: AbortSignal | undefined): Promise<ImageConfig | undefined> {
  if ((d.mediaType !== MEDIA_TYPES.ociConfig && d.mediaType !== MEDIA_TYPES.dockerConfig) || d.size > MAX_CONFIG_BYTES) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of openBlobStream(session, d, { signal })) chunks.push(chunk as Buffer);
  try {
    const parsed = ImageConfig.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

// Nested indexes are expanded in place so index order stays the tie-break.
async function flatten(session: RegistrySession, index: ImageIndex, depth: number, out: IndexCandidate[], signal?: AbortSignal): Promise<void> {
  for (const descriptor of index.manifests) {
    if (INDEX_TYPES.has(descriptor.mediaType)) {
      if (depth + 1 >= MAX_INDEX_DEPTH) throw new AgentError('OCI_MANIFEST_INVALID', `Image indexes nested deeper than ${MAX_INDEX_DEPTH}`);
      const nested = await fetchManifest(session, descriptor.digest, { signal, expectedSize: descriptor.size });
      if (nested.kind === 'index') await flatten(session, nested.index, depth + 1, out, signal);
    } else if (MANIFEST_TYPES.has(descriptor.mediaType)) {
      out.push({ descriptor, order: out.length });
    }
  }
}

export async function inspectImage(client: ImageResolver, input: string | ImageReference, options: InspectOptions = {}): Promise<ImageInspection> {
  const resolved = await client.resolve(input, options);
  const { session } = await client.session(resolved.source, resolved.reference, options.credentials);
  const wanted = options.platform ? normalizePlatform({ os: 'linux', ...options.platform }) : hostPlatform();
  const downloadSource = options.downloadSource ?? 'http';
  const build = (doc: ManifestDocument, descriptor: Descriptor | undefined): Promise<ImageInspection | undefined> =>
    describe({ client, session, resolved, doc, descriptor, wanted, downloadSource, options });

  if (resolved.document.kind === 'manifest') {
    const result = await build(resolved.document, undefined);
    if (result) return result;
  } else {
    const candidates: IndexCandidate[] = [];
    await flatten(session, resolved.document.index, 0, candidates, options.signal);
    for (const c of rankCandidates(candidates, wanted, downloadSource)) {
      const doc = await fetchManifest(session, c.descriptor.digest, { signal: options.signal, expectedSize: c.descriptor.size });
      const result = doc.kind === 'manifest' ? await build(doc, c.descriptor) : undefined;
      if (result) return result;
    }
  }
  throw new AgentError('OCI_PLATFORM_NOT_FOUND',
    `${toPodmanReference(resolved.reference)} has no ${options.kind ?? 'manifest'} for platform ${formatPlatform(wanted)}`, {
      details: { reference: toPodmanReference(resolved.reference), platform: formatPlatform(wanted), ...(options.kind ? { kind: options.kind } : {}) },
    });
}

interface DescribeInput {
  client: ImageResolver;
  session: RegistrySession;
  resolved: ResolvedImage;
  doc: ManifestDocument;
  descriptor: Descriptor | undefined;
  wanted: PlatformSpec;
  downloadSource: DownloadSource;
  options: InspectOptions;
}

// One candidate manifest → an inspection, or undefined when it does not qualify.
async function describe(input: DescribeInput): Promise<ImageInspection | undefined> {
  const { session, resolved, doc, descriptor, wanted, options } = input;
  if (doc.kind !== 'manifest') return undefined;
  const manifest = doc.manifest;
  const kind: ImageKind = isArtifactManifest(manifest, descriptor) ? 'artifact' : 'bootc-image';
  if (options.kind && options.kind !== kind) return undefined;
  const disktype = descriptor?.annotations?.['disktype'] ?? manifest.annotations?.['disktype'];
  if (!descriptor && disktypeRank(disktype, input.downloadSource) === undefined) return undefined;
  if (kind === 'artifact' && manifest.layers.length !== 1) {
    input.client.log.info({ digest: doc.digest, layers: manifest.layers.length }, 'skipping multi-layer artifact');
    return undefined;
  }
  const config = await readConfig(session, manifest.config, options.signal);
  const platformSource = descriptor?.platform ?? (config?.architecture ? { architecture: config.architecture, os: config.os, variant: config.variant } : undefined);
  const platform = platformSource ? normalizePlatform(platformSource) : undefined;
  if (!descriptor && platform && platformScore(wanted, platform) === undefined) return undefined;

  const keys = options.uncompressedSizeAnnotations ?? DEFAULT_UNCOMPRESSED_SIZE_ANNOTATIONS;
  const layers: LayerInfo[] = manifest.layers.map((l) => {
    const annotations = l.annotations ?? {};
    const raw = keys.map((k) => annotations[k]).find((v) => v !== undefined && /^[0-9]+$/.test(v));
    const uncompressed = raw === undefined ? undefined : Number(raw);
    return {
      digest: l.digest, mediaType: l.mediaType, size: l.size, annotations,
      ...(uncompressed !== undefined && Number.isSafeInteger(uncompressed) ? { uncompressedSize: uncompressed } : {}),
    };
  });
  const totalCompressedSize = layers.reduce((sum, l) => sum + l.size, 0);
  const allUncompressed = layers.every((l) => l.uncompressedSize !== undefined);
  const reference = withDigest(resolved.reference, doc.digest);
  const single = kind === 'artifact' ? manifest.layers[0] : undefined;
  const title = single?.annotations?.['org.opencontainers.image.title'];
  const fileName = safeFileName(title);
  const compression = single ? compressionOf(single.mediaType, fileName) : undefined;
  const artifactType = descriptor?.artifactType ?? manifest.artifactType;
  const diskFormat = diskFormatOf(disktype);
  return {
    reference,
    resolvedDigest: resolved.document.digest,
    digest: doc.digest,
    mediaType: doc.mediaType,
    kind,
    ...(platform ? { platform } : {}),
    ...(artifactType ? { artifactType } : {}),
    ...(disktype !== undefined ? { disktype } : {}),
    ...(diskFormat ? { diskFormat } : {}),
    config: manifest.config,
    ...(config ? {
      imageConfig: {
        ...(config.architecture ? { architecture: config.architecture } : {}),
        ...(config.os ? { os: config.os } : {}),
        ...(config.variant ? { variant: config.variant } : {}),
        labels: config.config?.Labels ?? {},
      },
    } : {}),
    layers,
    totalCompressedSize,
    ...(allUncompressed && layers.length > 0 ? { totalUncompressedSize: layers.reduce((s, l) => s + (l.uncompressedSize ?? 0), 0) } : {}),
    ...(fileName ? { fileName } : {}),
    ...(compression ? { compression } : {}),
    source: resolved.source,
    podmanReference: toPodmanReference(reference),
    ...(resolved.signatures ? { signatures: resolved.signatures } : {}),
  };
}
