/**
 * Choosing among index entries the way Ironic's conductor does (image_service.py
 * `_filter_manifests`, `identify_specific_image`), so the agent and the conductor pick the same
 * thing: architecture filter with aliases, `disktype` ranking, index order as the tie-break.
 * @module
 */
import { basename } from 'node:path';
import { platformScore, type PlatformSpec } from './platform.ts';
import { MEDIA_TYPES, type Descriptor, type ImageManifest } from './schemas.ts';

/** Ironic's `image_download_source`: `local` prefers qcow2, agent downloads (`http`) prefer raw. */
export type DownloadSource = 'http' | 'local';

const DISKTYPE_RANK: Record<DownloadSource, Record<string, number>> = {
  local: { qcow2: 1, qemu: 2, raw: 3, applehv: 4 },
  http: { raw: 1, applehv: 2, qcow2: 3, qemu: 4 },
};
const NO_DISKTYPE_RANK = 100;

/** Rank of a `disktype` annotation (lower is better); undefined means Ironic would drop the entry. */
export function disktypeRank(disktype: string | undefined, source: DownloadSource): number | undefined {
  if (disktype === undefined) return NO_DISKTYPE_RANK;
  return DISKTYPE_RANK[source][disktype];
}

/** Ironic normalises `applehv` to raw and every other non-raw type to qcow2. */
export function diskFormatOf(disktype: string | undefined): 'raw' | 'qcow2' | undefined {
  if (disktype === undefined) return undefined;
  return disktype === 'raw' || disktype === 'applehv' ? 'raw' : 'qcow2';
}

export interface IndexCandidate {
  descriptor: Descriptor;
  /** Position in the flattened index (nested indexes expanded in place). */
  order: number;
}

export interface RankedCandidate extends IndexCandidate {
  platformScore: number;
  disktypeRank: number;
}

export function rankCandidates(candidates: readonly IndexCandidate[], wanted: PlatformSpec, source: DownloadSource): RankedCandidate[] {
  const ranked: RankedCandidate[] = [];
  for (const c of candidates) {
    const pScore = platformScore(wanted, c.descriptor.platform);
    const dRank = disktypeRank(c.descriptor.annotations?.['disktype'], source);
    if (pScore === undefined || dRank === undefined) continue;
    ranked.push({ ...c, platformScore: pScore, disktypeRank: dRank });
  }
  return ranked.sort((a, b) => a.disktypeRank - b.disktypeRank || a.platformScore - b.platformScore || a.order - b.order);
}

/**
 * Ironic's `is_oci_artifact_image`: an artifact has an `artifactType` or the empty config;
 * everything else is treated as a bootable container image.
 */
export function isArtifactManifest(manifest: ImageManifest, descriptor?: Descriptor): boolean {
  if (descriptor?.artifactType || manifest.artifactType) return true;
  return manifest.config.mediaType === MEDIA_TYPES.empty;
}

/** A safe file name from `org.opencontainers.image.title` (no paths, no traversal), or undefined. */
export function safeFileName(title: string | undefined): string | undefined {
  if (title === undefined) return undefined;
  if (title.includes('\0') || title.includes('/') || title.includes('\\')) return undefined;
  const name = basename(title);
  if (name === '' || name === '.' || name === '..' || name.length > 255) return undefined;
  return name;
}

export type Compression = 'zstd' | 'gzip' | 'xz' | 'none';

/** From the media type suffix first (`+zstd`, `.tar.gzip`, `application/zstd`), else the title's extension. */
export function compressionOf(mediaType: string, title?: string): Compression | undefined {
  const type = mediaType.toLowerCase();
  if (/[+.]zstd$/.test(type) || type === 'application/zstd') return 'zstd';
  if (/[+.]gzip$/.test(type) || type === 'application/gzip') return 'gzip';
  if (/[+.]xz$/.test(type) || type === 'application/x-xz') return 'xz';
  const name = (title ?? '').toLowerCase();
  if (name.endsWith('.zst') || name.endsWith('.zstd')) return 'zstd';
  if (name.endsWith('.gz')) return 'gzip';
  if (name.endsWith('.xz')) return 'xz';
  if (type.endsWith('.tar') || type === MEDIA_TYPES.ociConfig || title !== undefined) return 'none';
  return undefined;
}
