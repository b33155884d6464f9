/**
 * Blob uploads (distribution-spec "Pushing blobs"): HEAD first and skip a blob the repository has,
 * a cross-repository mount when the caller names a source repository (an upload when the registry
 * answers 202 instead), then a monolithic PUT or PATCH chunks with `Content-Range` and a closing
 * PUT. An upload session cannot be replayed half-way, so a transient failure restarts the whole
 * upload (POST included) under the client's retry policy.
 * @module
 */
import type { Readable } from 'node:stream';
import { AgentError, isAgentError } from '../errors.ts';
import { parseDigest } from './digest.ts';
import { cancelled, discard, header, isRetryableNetworkError, unreachable, type HttpResponse } from './http.ts';
import { RETRYABLE_STATUSES, retryDelay } from './retry.ts';
import type { RegistrySession, SessionRequest } from './session.ts';

/** Default chunk size: blobs up to this size go in one PUT, larger ones in PATCH chunks of it. */
export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

/** A blob to upload: its digest and size are known (computed over the same bytes `read` returns). */
export interface BlobInput {
  digest: string;
  size: number;
  /** The bytes `[start, end)`: a buffer or a fresh stream (called again for every attempt). */
  read(start: number, end: number): Buffer | Readable | Promise<Buffer | Readable>;
}

export interface UploadOptions {
  signal?: AbortSignal | undefined;
  /** Bytes per PATCH; blobs no larger than this go in one PUT. 0: always one PUT. */
  chunkSize?: number | undefined;
  /** A repository on the same registry that has the blob: try `?mount=&from=` first. */
  mountFrom?: string | undefined;
  onProgress?: ((sent: number, total: number) => void) | undefined;
}

export type UploadOutcome = 'exists' | 'mounted' | 'uploaded';

/** Thrown inside one attempt when restarting the upload may help (429/5xx, network). */
class Transient extends Error {
  constructor(readonly status: number | undefined, readonly retryAfterMs: number | undefined, readonly original: unknown) {
    super('transient upload failure');
  }
}

/** Turn a non-success answer to a push request into OCI_PUSH_FAILED (auth stays REGISTRY_AUTH_FAILED). */
export async function pushFailure(session: RegistrySession, res: HttpResponse, what: string): Promise<AgentError> {
  const err = await session.failure(res, what);
  if (err.code === 'REGISTRY_AUTH_FAILED' || err.code === 'REGISTRY_UNAVAILABLE') return err;
  return new AgentError('OCI_PUSH_FAILED', err.message, { details: err.details });
}

function blobPath(session: RegistrySession, digest: string): string {
  return `/v2/${session.repository}/blobs/${digest}`;
}

async function transientOrFail(session: RegistrySession, res: HttpResponse, what: string): Promise<never> {
  if (RETRYABLE_STATUSES.has(res.statusCode)) {
    await discard(res);
    throw new Transient(res.statusCode, undefined, undefined);
  }
  throw await pushFailure(session, res, what);
}

// One request of an upload: no retries of its own, network errors become Transient.
async function step(session: RegistrySession, path: string, init: SessionRequest): Promise<HttpResponse> {
  try {
    return await session.request(path, { ...init, retry: false });
  } catch (err) {
    if (isRetryableNetworkError(err)) throw new Transient(undefined, undefined, err);
    throw err;
  }
}

function uploadLocation(res: HttpResponse, what: string): string {
  const location = header(res, 'location');
  if (!location) throw new AgentError('REGISTRY_PROTOCOL', `${what}: HTTP ${res.statusCode} without a Location`, { details: { status: res.statusCode } });
  return location;
}

function withDigestParam(location: string, digest: string): string {
  const url = new URL(location, 'https://registry.invalid');
  url.searchParams.set('digest', digest);
  return /^[a-z]+:\/\//i.test(location) ? url.href : `${url.pathname}${url.search}`;
}

// The registry's digest header, when sent, must name what we uploaded.
function checkCreated(res: HttpResponse, digest: string, what: string): void {
  const served = header(res, 'docker-content-digest');
  if (served !== undefined && served !== digest) {
    throw new AgentError('OCI_DIGEST_MISMATCH', `${what}: the registry stored ${served.slice(0, 150)}, not ${digest}`, {
      details: { expected: digest, actual: served.slice(0, 150) },
    });
  }
}

async function bodyOf(blob: BlobInput, start: number, end: number, opened: Readable[]): Promise<Buffer | Readable> {
  const body = await blob.read(start, end);
  if (!Buffer.isBuffer(body)) opened.push(body);
  return body;
}

interface Attempt {
  session: RegistrySession;
  blob: BlobInput;
  options: UploadOptions;
  scopes: string[];
  what: string;
  opened: Readable[];
}

async function startUpload(a: Attempt): Promise<{ outcome: 'mounted' } | { location: string }> {
  const { session, blob, options, scopes, what } = a;
  const base = `/v2/${session.repository}/blobs/uploads/`;
  const mount = options.mountFrom && options.mountFrom !== session.repository;
  const path = mount ? `${base}?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(options.mountFrom!)}` : base;
  const res = await step(session, path, { method: 'POST', scopes, headers: { 'content-length': '0' }, signal: options.signal });
  if (mount && res.statusCode === 201) {
    checkCreated(res, blob.digest, what);
    await discard(res);
    return { outcome: 'mounted' };
  }
  if (res.statusCode !== 202) return transientOrFail(session, res, `${what}: starting the upload`);
  const location = uploadLocation(res, what);
  await discard(res);
  return { location };
}

async function putMonolithic(a: Attempt, location: string): Promise<void> {
  const { session, blob, options, scopes, what } = a;
  const body = await bodyOf(blob, 0, blob.size, a.opened);
  let first = true;
  const res = await step(session, withDigestParam(location, blob.digest), {
    method: 'PUT', scopes, signal: options.signal,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    // A redirect or an auth renewal re-sends the body: a stream is read once, so re-open it.
    body: () => {
      if (first || Buffer.isBuffer(body)) {
        first = false;
        return body;
      }
      throw new Transient(undefined, undefined, new Error('upload body needed twice'));
    },
  });
  if (res.statusCode !== 201) return transientOrFail(session, res, `${what}: PUT`);
  checkCreated(res, blob.digest, what);
  await discard(res);
  options.onProgress?.(blob.size, blob.size);
}

async function putChunks(a: Attempt, firstLocation: string, chunkSize: number): Promise<void> {
  const { session, blob, options, scopes, what } = a;
  let location = firstLocation;
  for (let start = 0; start < blob.size; start += chunkSize) {
    const end = Math.min(blob.size, start + chunkSize);
    const chunk = await blob.read(start, end);
    const bytes = Buffer.isBuffer(chunk) ? chunk : await collect(chunk);
    const res = await step(session, location, {
      method: 'PATCH', scopes, signal: options.signal, body: () => bytes,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end - 1}`, 'content-length': String(bytes.length) },
    });
    if (res.statusCode !== 202) return transientOrFail(session, res, `${what}: PATCH bytes ${start}-${end - 1}`);
    const range = header(res, 'range');
    if (range !== undefined && range !== `0-${end - 1}` && range !== `bytes=0-${end - 1}`) {
      await discard(res);
      throw new AgentError('REGISTRY_PROTOCOL', `${what}: the registry holds bytes ${range.slice(0, 40)} after a chunk ending at ${end - 1}`, {
        details: { range: range.slice(0, 40), expected_end: end - 1 },
      });
    }
    location = uploadLocation(res, what);
    await discard(res);
    options.onProgress?.(end, blob.size);
  }
  const res = await step(session, withDigestParam(location, blob.digest), {
    method: 'PUT', scopes, signal: options.signal, headers: { 'content-length': '0' },
  });
  if (res.statusCode !== 201) return transientOrFail(session, res, `${what}: closing PUT`);
  checkCreated(res, blob.digest, what);
  await discard(res);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function attemptUpload(a: Attempt): Promise<UploadOutcome> {
  const started = await startUpload(a);
  if ('outcome' in started) return started.outcome;
  const chunkSize = a.options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (chunkSize > 0 && a.blob.size > chunkSize) await putChunks(a, started.location, chunkSize);
  else await putMonolithic(a, started.location);
  return 'uploaded';
}

/** Is the blob already in the repository? */
export async function blobExists(session: RegistrySession, digest: string, scopes: readonly string[], signal?: AbortSignal): Promise<boolean> {
  const res = await session.request(blobPath(session, digest), { method: 'HEAD', scopes, signal });
  await discard(res);
  if (res.statusCode === 200) return true;
  if (res.statusCode === 404) return false;
  throw await pushFailure(session, res, `HEAD blob ${session.repository}@${digest}`);
}

/** Upload one blob unless the repository has it; says what happened. */
export async function uploadBlob(session: RegistrySession, blob: BlobInput, options: UploadOptions = {}): Promise<UploadOutcome> {
  parseDigest(blob.digest);
  if (!Number.isSafeInteger(blob.size) || blob.size < 0) throw new AgentError('INTERNAL', `blob size ${blob.size} is not a byte count`);
  const scopes = session.pushScopes(options.mountFrom);
  const what = `blob ${session.repository}@${blob.digest}`;
  if (await blobExists(session, blob.digest, scopes, options.signal)) return 'exists';
  const http = session.options.http;
  for (let n = 1; ; n++) {
    const opened: Readable[] = [];
    try {
      return await attemptUpload({ session, blob, options, scopes, what, opened });
    } catch (err) {
      const aborted = cancelled(options.signal, err);
      if (aborted) throw aborted;
      if (!(err instanceof Transient)) throw err;
      if (n >= http.retry.maxAttempts) {
        if (err.status !== undefined) {
          throw new AgentError('REGISTRY_UNAVAILABLE', `${what}: HTTP ${err.status} after ${n} attempts`, { details: { status: err.status, attempts: n } });
        }
        throw isAgentError(err.original) ? err.original : unreachable(session.origin, err.original);
      }
      const delay = retryDelay(http.retry, n, err.retryAfterMs, http.random);
      http.log.warn({ blob: blob.digest, attempt: n, delay_ms: delay, status: err.status }, 'blob upload failed; starting it again');
      await http.sleep(delay, options.signal).catch((e: unknown) => { throw cancelled(options.signal, e) ?? e; });
    } finally {
      for (const stream of opened) stream.destroy();
    }
  }
}
