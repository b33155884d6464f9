/**
 * Manifest requests: tag → digest by HEAD (GET fallback on 405/404/no digest header), then
 * GET by digest with the four-type Accept, a 4 MiB cap and the digest verified over raw bytes.
 * @module
 */
import { AgentError } from '../errors.ts';
import { digestOf, parseDigest, tryParseDigest, verifyBytes } from './digest.ts';
import { header, discard, readBody, type HttpResponse } from './http.ts';
import { MAX_MANIFEST_BYTES, parseManifestDocument, type ManifestDocument } from './manifest-parse.ts';
import { MANIFEST_ACCEPT } from './schemas.ts';
import type { RegistrySession } from './session.ts';

function manifestPath(session: RegistrySession, target: string): string {
  // Tags and digests are validated by the reference grammar, so they are safe path segments.
  return `/v2/${session.repository}/manifests/${target}`;
}

async function readManifest(session: RegistrySession, res: HttpResponse, what: string): Promise<Buffer> {
  if (res.statusCode !== 200) throw await session.failure(res, what);
  return readBody(res, MAX_MANIFEST_BYTES, what, () => new AgentError('OCI_MANIFEST_INVALID', `${what}: larger than 4 MiB`));
}

/** GET a manifest by digest and verify it (and its size, when the caller knows it from a descriptor). */
export async function fetchManifest(
  session: RegistrySession,
  digest: string,
  options: { signal?: AbortSignal | undefined; expectedSize?: number | undefined } = {},
): Promise<ManifestDocument> {
  parseDigest(digest);
  const what = `manifest ${session.repository}@${digest}`;
  const res = await session.request(manifestPath(session, digest), { headers: { accept: MANIFEST_ACCEPT }, signal: options.signal });
  const bytes = await readManifest(session, res, what);
  if (options.expectedSize !== undefined && bytes.length !== options.expectedSize) {
    throw new AgentError('OCI_DIGEST_MISMATCH', `${what}: size ${bytes.length} differs from the descriptor's ${options.expectedSize}`, {
      details: { digest, expected_size: options.expectedSize, actual_size: bytes.length },
    });
  }
  verifyBytes(bytes, digest, what);
  return parseManifestDocument(bytes, header(res, 'content-type'), digest);
}

/**
 * Resolve a tag to one digest. HEAD does not count as a pull on Docker Hub; when HEAD is refused
 * (405), has no `Docker-Content-Digest`, or 404s on HEAD only, GET the tag and hash the body.
 */
export async function resolveTag(
  session: RegistrySession,
  tag: string,
  signal?: AbortSignal,
): Promise<{ digest: string; document?: ManifestDocument }> {
  const path = manifestPath(session, tag);
  const what = `manifest ${session.repository}:${tag}`;
  const head = await session.request(path, { method: 'HEAD', headers: { accept: MANIFEST_ACCEPT }, signal });
  const headDigest = header(head, 'docker-content-digest');
  await discard(head);
  if (head.statusCode === 200 && headDigest !== undefined && tryParseDigest(headDigest)) return { digest: headDigest };
  if (head.statusCode !== 200 && head.statusCode !== 404 && head.statusCode !== 405 && head.statusCode !== 501) {
    throw await session.failure(head, what);
  }
  const res = await session.request(path, { headers: { accept: MANIFEST_ACCEPT }, signal });
  const bytes = await readManifest(session, res, what);
  const served = header(res, 'docker-content-digest');
  const parsed = served === undefined ? undefined : tryParseDigest(served);
  if (served !== undefined && !parsed) {
    throw new AgentError('REGISTRY_PROTOCOL', `${what}: malformed Docker-Content-Digest header`, { details: { header: served.slice(0, 150) } });
  }
  // The header must match the body when present; without it we pin to the body's sha256.
  const digest = parsed ? `${parsed.algorithm}:${parsed.encoded}` : digestOf(bytes, 'sha256');
  verifyBytes(bytes, digest, what);
  return { digest, document: parseManifestDocument(bytes, header(res, 'content-type'), digest) };
}
