/**
 * Choosing a file artifact with all its files (any number of layers, unlike the one-file
 * selection Ironic and `write_image` make): resolve through mirrors and policy, pick the index
 * entry for the platform (index order breaks ties), require an artifact manifest and check every
 * title before a byte is fetched.
 * @module
 */
import { AgentError } from '../errors.ts';
import { checkTitles } from './artifact.ts';
import type { OciClient } from './client.ts';
import { fetchManifest } from './manifest-fetch.ts';
import type { ManifestDocument } from './manifest-parse.ts';
import { formatPlatform, hostPlatform, normalizePlatform, type PlatformSpec } from './platform.ts';
import { toPodmanReference, withDigest, type ImageReference } from './reference.ts';
import type { PullSource } from './registries-conf.ts';
import type { CallOptions } from './resolver.ts';
import { MANIFEST_TYPES, type Descriptor, type ImageManifest } from './schemas.ts';
import { isArtifactManifest, rankCandidates, type IndexCandidate } from './select.ts';

export interface ArtifactFileEntry {
  title: string;
  descriptor: Descriptor;
}

export interface SelectedArtifact {
  /** The logical reference pinned to the selected manifest. */
  reference: ImageReference;
  /** What the reference resolved to (the index digest for a multi-platform tag). */
  resolvedDigest: string;
  /** The selected manifest's digest. */
  digest: string;
  /** The index entry's platform (absent for a single manifest). */
  platform?: PlatformSpec;
  artifactType?: string;
  files: ArtifactFileEntry[];
  source: PullSource;
}

export interface SelectArtifactOptions extends CallOptions {
  platform?: { os?: string; architecture: string; variant?: string } | undefined;
}

function describeArtifact(manifest: ImageManifest, descriptor: Descriptor | undefined, digest: string, where: string) {
  if (!isArtifactManifest(manifest, descriptor)) return undefined;
  if (manifest.layers.length === 0) throw new AgentError('OCI_ARTIFACT_INVALID', `${where}: the artifact has no files`);
  const titles = checkTitles(manifest.layers, where);
  const artifactType = descriptor?.artifactType ?? manifest.artifactType;
  return {
    digest,
    ...(artifactType ? { artifactType } : {}),
    files: manifest.layers.map((d, i) => ({ title: titles[i]!, descriptor: d })),
  };
}

// Entries of the top-level index that are manifests; nested indexes are not artifact layouts.
function candidatesOf(doc: ManifestDocument): IndexCandidate[] {
  if (doc.kind !== 'index') return [];
  return doc.index.manifests.filter((d) => MANIFEST_TYPES.has(d.mediaType)).map((descriptor, order) => ({ descriptor, order }));
}

/** The artifact `input` names for `options.platform` (default: this host), files and titles checked. */
export async function selectArtifact(client: OciClient, input: string | ImageReference, options: SelectArtifactOptions = {}): Promise<SelectedArtifact> {
  const resolved = await client.resolve(input, options);
  const { session } = await client.session(resolved.source, resolved.reference, options.credentials);
  const wanted = options.platform ? normalizePlatform({ os: 'linux', ...options.platform }) : hostPlatform();
  const name = toPodmanReference(resolved.reference);
  const base = { resolvedDigest: resolved.document.digest, source: resolved.source };
  const doc = resolved.document;
  if (doc.kind === 'manifest') {
    const found = describeArtifact(doc.manifest, undefined, doc.digest, name);
    if (!found) throw new AgentError('OCI_PLATFORM_NOT_FOUND', `${name} is a container image, not a file artifact`, { details: { reference: name } });
    return { ...base, ...found, reference: withDigest(resolved.reference, doc.digest) };
  }
  for (const c of rankCandidates(candidatesOf(doc), wanted, 'http')) {
    const child = await fetchManifest(session, c.descriptor.digest, { signal: options.signal, expectedSize: c.descriptor.size });
    if (child.kind !== 'manifest') continue;
    const found = describeArtifact(child.manifest, c.descriptor, child.digest, `${name} (${c.descriptor.digest})`);
    if (!found) continue;
    const platform = c.descriptor.platform ? normalizePlatform(c.descriptor.platform) : undefined;
    return { ...base, ...found, ...(platform ? { platform } : {}), reference: withDigest(resolved.reference, child.digest) };
  }
  throw new AgentError('OCI_PLATFORM_NOT_FOUND', `${name} has no file artifact for platform ${formatPlatform(wanted)}`, {
    details: { reference: name, platform: formatPlatform(wanted) },
  });
}
