/**
 * Where signatures of one manifest digest are found: cosign's tag `sha256-<hex>.sig` (what
 * containers/image reads with `use-sigstore-attachments`) and the OCI 1.1 referrers of the
 * digest (`GET /v2/<name>/referrers/<digest>`, or the distribution-spec's fallback tag
 * `sha256-<hex>` on registries without the API). Nothing here trusts what it finds: every
 * candidate still goes through verification.
 * @module
 */
import { AgentError, isAgentError } from '../../errors.ts';
import { openBlobChunks } from '../blob.ts';
import { parseDigest } from '../digest.ts';
import { header, readBody } from '../http.ts';
import { fetchManifest, resolveTag } from '../manifest-fetch.ts';
import { MAX_MANIFEST_BYTES, parseManifestDocument, type ManifestDocument } from '../manifest-parse.ts';
import type { Descriptor } from '../schemas.ts';
import type { RegistrySession } from '../session.ts';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** cosign's artifactType for a simple-signing signature stored as a referrer. */
export const COSIGN_SIG_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
export const BUNDLE_MEDIA_TYPE_PREFIX = 'application/vnd.dev.sigstore.bundle';
const MAX_SIGNATURE_BLOB = 1024 * 1024;
const MAX_CANDIDATES = 64;
const MAX_REFERRER_PAGES = 10;

export type SignatureCandidate =
  | { format: 'simple-signing'; foundIn: string; payload: Buffer; signature: string }
  | { format: 'sigstore-bundle'; foundIn: string; bundle: unknown }
  | { format: 'unusable'; foundIn: string; problem: string };

export interface FoundSignatures {
  candidates: SignatureCandidate[];
  /** The places looked at, in order (for errors and results). */
  searched: string[];
}

function isNotFound(err: unknown): boolean {
  return isAgentError(err) && err.code === 'REGISTRY_NOT_FOUND';
}

async function readSmallBlob(session: RegistrySession, d: Descriptor, signal: AbortSignal | undefined): Promise<Buffer> {
  if (d.size > MAX_SIGNATURE_BLOB) throw new AgentError('OCI_MANIFEST_INVALID', `signature blob ${d.digest} is larger than ${MAX_SIGNATURE_BLOB} bytes`);
  const chunks: Buffer[] = [];
  for await (const chunk of openBlobChunks(session, d, { signal })) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// One signature manifest → the candidates it holds (simple-signing layers or one bundle layer).
async function candidatesOf(session: RegistrySession, doc: ManifestDocument, foundIn: string, signal: AbortSignal | undefined): Promise<SignatureCandidate[]> {
  if (doc.kind !== 'manifest') return [{ format: 'unusable', foundIn, problem: 'an index where a signature manifest was expected' }];
  const out: SignatureCandidate[] = [];
  for (const layer of doc.manifest.layers) {
    const where = `${foundIn}, layer ${layer.digest}`;
    if (layer.mediaType === SIMPLE_SIGNING_MEDIA_TYPE) {
      const signature = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
      if (!signature) out.push({ format: 'unusable', foundIn: where, problem: `no ${COSIGN_SIGNATURE_ANNOTATION} annotation` });
      else out.push({ format: 'simple-signing', foundIn: where, payload: await readSmallBlob(session, layer, signal), signature });
    } else if (layer.mediaType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX)) {
      const bytes = await readSmallBlob(session, layer, signal);
      try {
        out.push({ format: 'sigstore-bundle', foundIn: where, bundle: JSON.parse(bytes.toString('utf8')) as unknown });
      } catch {
        out.push({ format: 'unusable', foundIn: where, problem: 'the bundle is not JSON' });
      }
    }
  }
  return out;
}

async function fromSigTag(session: RegistrySession, digest: string, signal: AbortSignal | undefined, found: FoundSignatures): Promise<void> {
  const { algorithm, encoded } = parseDigest(digest);
  const tag = `${algorithm}-${encoded}.sig`;
  found.searched.push(`tag ${tag}`);
  let doc: ManifestDocument;
  try {
    const resolved = await resolveTag(session, tag, signal);
    doc = resolved.document ?? await fetchManifest(session, resolved.digest, { signal });
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  found.candidates.push(...await candidatesOf(session, doc, `tag ${tag}`, signal));
}

function isSignatureReferrer(d: Descriptor): boolean {
  const type = d.artifactType ?? '';
  return type === COSIGN_SIG_ARTIFACT_TYPE || type.startsWith(BUNDLE_MEDIA_TYPE_PREFIX);
}

// The referrers API, page by page (Link: <…>; rel="next"); undefined when the registry has no API.
async function referrersFromApi(session: RegistrySession, digest: string, signal: AbortSignal | undefined): Promise<Descriptor[] | undefined> {
  const all: Descriptor[] = [];
  let path: string | undefined = `/v2/${session.repository}/referrers/${digest}`;
  for (let page = 0; path && page < MAX_REFERRER_PAGES; page++) {
    const res = await session.request(path, { headers: { accept: 'application/vnd.oci.image.index.v1+json' }, signal });
    if (res.statusCode === 404 && page === 0) {
      await readBody(res, MAX_MANIFEST_BYTES, 'referrers').catch(() => undefined);
      return undefined;
    }
    if (res.statusCode !== 200) throw await session.failure(res, `referrers of ${session.repository}@${digest}`);
    const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header(res, 'link') ?? '')?.[1];
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, 'referrers');
    const doc = parseManifestDocument(bytes, 'application/vnd.oci.image.index.v1+json', `referrers of ${digest}`);
    if (doc.kind !== 'index') throw new AgentError('REGISTRY_PROTOCOL', `the referrers of ${digest} are not an image index`);
    all.push(...doc.index.manifests);
    path = next ? new URL(next, session.origin).pathname + new URL(next, session.origin).search : undefined;
  }
  return all;
}

async function fromReferrers(session: RegistrySession, digest: string, signal: AbortSignal | undefined, found: FoundSignatures): Promise<void> {
  const api = `referrers API /v2/${session.repository}/referrers/${digest}`;
  found.searched.push(api);
  let referrers = await referrersFromApi(session, digest, signal);
  let where = 'referrers API';
  if (!referrers) {
    const { algorithm, encoded } = parseDigest(digest);
    const tag = `${algorithm}-${encoded}`;
    where = `referrers tag ${tag}`;
    found.searched.push(where);
    try {
      const resolved = await resolveTag(session, tag, signal);
      const doc = resolved.document ?? await fetchManifest(session, resolved.digest, { signal });
      referrers = doc.kind === 'index' ? doc.index.manifests : [];
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
  }
  for (const d of referrers.filter(isSignatureReferrer)) {
    if (found.candidates.length >= MAX_CANDIDATES) return;
    const doc = await fetchManifest(session, d.digest, { signal, expectedSize: d.size });
    found.candidates.push(...await candidatesOf(session, doc, `referrer ${d.digest} (${where})`, signal));
  }
}

/** Every signature candidate for `digest` in the session's repository. */
export async function findSignatures(session: RegistrySession, digest: string, signal?: AbortSignal): Promise<FoundSignatures> {
  const found: FoundSignatures = { candidates: [], searched: [] };
  await fromSigTag(session, digest, signal, found);
  await fromReferrers(session, digest, signal, found);
  found.candidates.splice(MAX_CANDIDATES);
  return found;
}
