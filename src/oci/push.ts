/**
 * The push side of the client: a session with `pull,push` scope on the repository as written
 * (registries.conf rewrites and mirrors are for pulls; its `insecure` still applies), blob uploads
 * (upload.ts) and manifest/index PUTs by tag or digest, each checked against the digest the
 * registry reports.
 * @module
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { AgentError } from '../errors.ts';
import type { OciClient } from './client.ts';
import type { Credentials } from './credentials.ts';
import { digestOf, parseDigest } from './digest.ts';
import { discard, header } from './http.ts';
import { parseReference, type ImageReference } from './reference.ts';
import { isInsecureRegistry, type RegistriesConfig } from './registries-conf.ts';
import type { RegistrySession } from './session.ts';
import { pushFailure, uploadBlob, type BlobInput, type UploadOptions, type UploadOutcome } from './upload.ts';

const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const MAX_MANIFEST_PUSH = 4 * 1024 * 1024;

export interface PushedDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface RepositoryPusher {
  readonly reference: ImageReference;
  readonly session: RegistrySession;
  /** Upload a blob unless the repository has it (`mountFrom`: a repository on the same registry to mount it from). */
  pushBlob(blob: BlobInput, options?: UploadOptions): Promise<UploadOutcome>;
  /** PUT a manifest or index under a tag, or under its own digest when `target` is omitted. */
  pushManifest(bytes: Buffer, mediaType: string, target?: string, signal?: AbortSignal): Promise<PushedDescriptor>;
}

export interface PushOptions {
  /** Credentials for the repository's registry (else the client's auth files). */
  credentials?: Credentials | undefined;
  /** registries.conf, for `insecure` (plain http fallback, no TLS verification). */
  registries?: RegistriesConfig | undefined;
}

/** Open a push session on `oci://host/repo` (a tag or digest in the reference is ignored). */
export async function openRepositoryPusher(client: OciClient, input: string | ImageReference, options: PushOptions = {}): Promise<RepositoryPusher> {
  const reference = typeof input === 'string' ? parseReference(input) : input;
  const insecure = options.registries ? isInsecureRegistry(options.registries, reference.registry) : false;
  const source = { registry: reference.registry, repository: reference.repository, insecure, mirror: false };
  const { session } = await client.session(source, reference, options.credentials);
  return {
    reference,
    session,
    pushBlob: (blob, uploadOptions) => uploadBlob(session, blob, uploadOptions),
    pushManifest: (bytes, mediaType, target, signal) => putManifest(session, bytes, mediaType, target, signal),
  };
}

async function putManifest(session: RegistrySession, bytes: Buffer, mediaType: string, target: string | undefined, signal: AbortSignal | undefined): Promise<PushedDescriptor> {
  const digest = digestOf(bytes);
  const name = `${session.options.registry}/${session.repository}`;
  if (bytes.length > MAX_MANIFEST_PUSH) {
    throw new AgentError('OCI_PUSH_FAILED', `manifest for ${name} is ${bytes.length} bytes; registries accept at most 4 MiB`, { details: { size: bytes.length } });
  }
  const ref = target ?? digest;
  if (ref.includes(':')) {
    parseDigest(ref);
    if (ref !== digestOf(bytes, parseDigest(ref).algorithm)) {
      throw new AgentError('OCI_DIGEST_MISMATCH', `manifest bytes do not hash to ${ref}`, { details: { expected: ref, actual: digest } });
    }
  } else if (!TAG.test(ref)) {
    throw new AgentError('OCI_REFERENCE_INVALID', `Invalid tag "${ref.slice(0, 150)}"`, { details: { tag: ref.slice(0, 150) } });
  }
  const what = `manifest ${name}:${ref}`;
  const res = await session.request(`/v2/${session.repository}/manifests/${ref}`, {
    method: 'PUT', scopes: session.pushScopes(), signal, body: () => bytes,
    headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
  });
  if (res.statusCode !== 201) throw await pushFailure(session, res, what);
  const served = header(res, 'docker-content-digest');
  await discard(res);
  if (served !== undefined && served !== digest && served !== ref) {
    throw new AgentError('OCI_DIGEST_MISMATCH', `${what}: the registry stored ${served.slice(0, 150)}, not ${digest}`, {
      details: { expected: digest, actual: served.slice(0, 150) },
    });
  }
  return { mediaType, digest, size: bytes.length };
}

/** A blob input over bytes in memory (configs, small files). */
export function bufferBlob(bytes: Buffer): BlobInput {
  return { digest: digestOf(bytes), size: bytes.length, read: (start, end) => bytes.subarray(start, end) };
}

/** A blob input over a file: hashed once here, then streamed (or read by chunk) from disk per attempt. */
export async function fileBlob(path: string): Promise<BlobInput> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  const { size } = await stat(path);
  return {
    digest: `sha256:${hash.digest('hex')}`,
    size,
    read: (start, end) => (end > start ? createReadStream(path, { start, end: end - 1 }) : Buffer.alloc(0)),
  };
}

/** `oci://host/repo@digest` for a pushed document. */
export function pinnedUrl(reference: ImageReference, digest: string): string {
  return `oci://${reference.registry}/${reference.repository}@${digest}`;
}
