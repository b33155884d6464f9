/**
 * File artifacts the way `oras push` lays them out and Ironic's OCI image service reads them:
 * an image manifest with `artifactType`, the empty config (`{}`, `application/vnd.oci.empty.v1+json`)
 * and one layer per file titled by `org.opencontainers.image.title`; an image index lists such
 * manifests per platform. Documents are serialised with a fixed key order and no timestamp unless
 * one is given, so the same files give the same digests.
 * @module
 */
import { AgentError } from '../errors.ts';
import { EMPTY_JSON_DIGEST } from './digest.ts';
import { MEDIA_TYPES, type Descriptor, type Platform } from './schemas.ts';

export const TITLE_ANNOTATION = 'org.opencontainers.image.title';
export const CREATED_ANNOTATION = 'org.opencontainers.image.created';
export const EMPTY_CONFIG_BYTES = Buffer.from('{}');
export const EMPTY_CONFIG: Descriptor = { mediaType: MEDIA_TYPES.empty, digest: EMPTY_JSON_DIGEST, size: 2, data: 'e30=' };

// C0/C1 controls, DEL, and the bidirectional overrides that make a name display as another.
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/** Why `title` cannot be a file name in a directory of our choosing, or undefined when it can. */
export function titleProblem(title: string | undefined): string | undefined {
  if (title === undefined || title === '') return 'has no org.opencontainers.image.title';
  if (title.includes('/') || title.includes('\\')) return 'contains a path separator';
  if (title === '.' || title === '..' || title.startsWith('.')) return 'is hidden or a parent-directory name';
  if (HIDDEN.test(title)) return 'contains control or bidirectional-override characters';
  if (title.startsWith('-')) return 'starts with "-"';
  if (Buffer.byteLength(title) > 255) return 'is longer than 255 bytes';
  if (title !== title.normalize('NFC')) return 'is not in Unicode normal form C';
  return undefined;
}

/** Throws OCI_ARTIFACT_INVALID on a bad or repeated title; returns the titles in order. */
export function checkTitles(layers: readonly Pick<Descriptor, 'annotations' | 'digest'>[], where: string): string[] {
  const seen = new Set<string>();
  return layers.map((layer) => {
    const title = layer.annotations?.[TITLE_ANNOTATION];
    const problem = titleProblem(title);
    const shown = JSON.stringify((title ?? '').slice(0, 80));
    if (problem) {
      throw new AgentError('OCI_ARTIFACT_INVALID', `${where}: the title ${shown} of layer ${layer.digest} ${problem}`, {
        details: { layer: layer.digest, title: (title ?? '').slice(0, 80) },
      });
    }
    if (seen.has(title!)) {
      throw new AgentError('OCI_ARTIFACT_INVALID', `${where}: two layers have the title ${shown}`, { details: { title: title!.slice(0, 80) } });
    }
    seen.add(title!);
    return title!;
  });
}

export interface ArtifactFile {
  title: string;
  mediaType: string;
  digest: string;
  size: number;
}

export interface ArtifactManifestInput {
  artifactType: string;
  files: readonly ArtifactFile[];
  /** `org.opencontainers.image.created` and other manifest annotations (keys sorted on output). */
  annotations?: Record<string, string> | undefined;
}

function sortedAnnotations(annotations: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!annotations || Object.keys(annotations).length === 0) return undefined;
  return Object.fromEntries(Object.entries(annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The manifest bytes of a file artifact (titles checked, layers in the given order). */
export function artifactManifest(input: ArtifactManifestInput): Buffer {
  const layers = input.files.map((f) => ({ mediaType: f.mediaType, digest: f.digest, size: f.size, annotations: { [TITLE_ANNOTATION]: f.title } }));
  checkTitles(layers, 'artifact');
  const annotations = sortedAnnotations(input.annotations);
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    artifactType: input.artifactType,
    config: EMPTY_CONFIG,
    layers,
    ...(annotations ? { annotations } : {}),
  }));
}

export interface IndexEntry {
  digest: string;
  size: number;
  platform: Platform;
  artifactType?: string | undefined;
}

/**
 * An image index over artifact manifests, one per platform, in the given order. Each entry repeats
 * its manifest's `artifactType`: Ironic classifies the entries of an index it reached by tag from
 * the entry alone (without it, a file artifact is taken for a bootc image). The index itself has
 * none (nothing reads it there).
 */
export function artifactIndex(entries: readonly IndexEntry[], options: { annotations?: Record<string, string> | undefined } = {}): Buffer {
  const manifests = entries.map((e) => ({
    mediaType: MEDIA_TYPES.ociManifest,
    digest: e.digest,
    size: e.size,
    ...(e.artifactType ? { artifactType: e.artifactType } : {}),
    platform: { architecture: e.platform.architecture, os: e.platform.os, ...(e.platform.variant ? { variant: e.platform.variant } : {}) },
  }));
  const annotations = sortedAnnotations(options.annotations);
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests,
    ...(annotations ? { annotations } : {}),
  }));
}

/** `org.opencontainers.image.created` from SOURCE_DATE_EPOCH (seconds), or undefined: no timestamp without it. */
export function createdFromEpoch(epoch: string | undefined): string | undefined {
  if (epoch === undefined || epoch === '') return undefined;
  if (!/^[0-9]{1,12}$/.test(epoch)) {
    throw new AgentError('OCI_ARTIFACT_INVALID', `SOURCE_DATE_EPOCH must be a number of seconds, got "${epoch.slice(0, 30)}"`);
  }
  return new Date(Number(epoch) * 1000).toISOString().replace('.000Z', 'Z');
}
