/**
 * Turning raw manifest bytes into a typed manifest or index, with the checks the spec and
 * past CVEs ask for: schema1 refused, mediaType vs Content-Type, ambiguous documents refused.
 * @module
 */
import { AgentError } from '../errors.ts';
import {
  ImageIndex, ImageManifest, INDEX_TYPES, MANIFEST_TYPES, MEDIA_TYPES, SCHEMA1_TYPES,
} from './schemas.ts';

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export type ManifestDocument =
  | { kind: 'index'; mediaType: string; digest: string; bytes: Buffer; index: ImageIndex }
  | { kind: 'manifest'; mediaType: string; digest: string; bytes: Buffer; manifest: ImageManifest };

function invalid(message: string, details: Record<string, unknown> = {}): AgentError {
  return new AgentError('OCI_MANIFEST_INVALID', message, { details });
}

/** `application/vnd.oci.image.manifest.v1+json; charset=utf-8` → the bare, lower-case type. */
export function simplifyContentType(value: string | undefined): string {
  return (value ?? '').split(';')[0]!.trim().toLowerCase();
}

function isKnownType(type: string): boolean {
  return INDEX_TYPES.has(type) || MANIFEST_TYPES.has(type) || SCHEMA1_TYPES.has(type);
}

/**
 * Parse a manifest or index already verified against its digest. Unknown Content-Types
 * (`text/plain` from a CDN, `application/json`) are ignored and the document's own fields decide.
 */
export function parseManifestDocument(bytes: Buffer, contentType: string | undefined, digest: string): ManifestDocument {
  if (bytes.length > MAX_MANIFEST_BYTES) throw invalid(`Manifest ${digest} is larger than 4 MiB`);
  const type = simplifyContentType(contentType);
  if (SCHEMA1_TYPES.has(type)) throw invalid(`Manifest ${digest} is Docker schema1 (${type}), which is not supported`);
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new AgentError('OCI_MANIFEST_INVALID', `Manifest ${digest} is not JSON`, { cause: err, details: { content_type: type } });
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(`Manifest ${digest} is not a JSON object`);
  const doc = body as Record<string, unknown>;
  if (doc['schemaVersion'] === 1) throw invalid(`Manifest ${digest} is Docker schema1, which is not supported`);
  const declared = typeof doc['mediaType'] === 'string' ? doc['mediaType'] : undefined;
  if (declared !== undefined && SCHEMA1_TYPES.has(declared)) throw invalid(`Manifest ${digest} is Docker schema1`);
  if (declared !== undefined && isKnownType(type) && declared !== type) {
    throw invalid(`Manifest ${digest} declares mediaType ${declared} but was served as ${type}`, { media_type: declared, content_type: type });
  }
  const hasIndexFields = 'manifests' in doc;
  const hasManifestFields = 'config' in doc || 'layers' in doc;
  // CVE-2021-41190: a document readable as both kinds could mean different things to different tools.
  if (hasIndexFields && hasManifestFields) throw invalid(`Manifest ${digest} is ambiguous (has both manifests and config/layers)`);

  const mediaType = declared ?? (isKnownType(type) ? type : hasIndexFields ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest);
  if (INDEX_TYPES.has(mediaType)) {
    if (hasManifestFields) throw invalid(`Index ${digest} has manifest fields`);
    const parsed = ImageIndex.safeParse(doc);
    if (!parsed.success) throw invalid(`Index ${digest} is malformed: ${summarise(parsed.error.issues)}`);
    return { kind: 'index', mediaType, digest, bytes, index: parsed.data };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (hasIndexFields) throw invalid(`Manifest ${digest} has index fields`);
    const parsed = ImageManifest.safeParse(doc);
    if (!parsed.success) throw invalid(`Manifest ${digest} is malformed: ${summarise(parsed.error.issues)}`);
    return { kind: 'manifest', mediaType, digest, bytes, manifest: parsed.data };
  }
  throw invalid(`Manifest ${digest} has unsupported media type ${mediaType}`, { media_type: mediaType });
}

function summarise(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}
