/**
 * Blob streaming: size and digest verified on the fly, resume with a bounded `Range` after an
 * interruption (206 + exact `Content-Range` required; 200 restarts from zero with the already
 * emitted prefix re-checked; 416 restarts once), every attempt re-entering via the registry URL.
 * @module
 */
import type { Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { AgentError } from '../errors.ts';
import { createDigestHash, parseDigest, type DigestAlgorithm } from './digest.ts';
import { cancelBody, cancelled, header, isRetryableNetworkError, type HttpResponse } from './http.ts';
import { retryDelay } from './retry.ts';
import type { Descriptor } from './schemas.ts';
import type { RegistrySession } from './session.ts';

export interface BlobProgress {
  digest: string;
  bytes: number;
  total: number;
}

export interface BlobOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: BlobProgress) => void) | undefined;
  /** Interruptions to resume from before giving up (default 5). */
  maxResumes?: number | undefined;
}

const PROGRESS_STEP = 1024 * 1024;
const BATCH_BYTES = 64 * 1024;

class Truncated extends Error {
  readonly code = 'BLOB_TRUNCATED';
}

function mismatch(d: Descriptor, message: string, details: Record<string, unknown> = {}): AgentError {
  return new AgentError('OCI_DIGEST_MISMATCH', `blob ${d.digest}: ${message}`, { details: { digest: d.digest, size: d.size, ...details } });
}

// `bytes <first>-<last>/<size|*>` must start exactly where we stopped and end at the last byte.
function checkContentRange(res: HttpResponse, offset: number, size: number, d: Descriptor): void {
  const value = header(res, 'content-range') ?? '';
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (!m || Number(m[1]) !== offset || Number(m[2]) !== size - 1 || (m[3] !== '*' && Number(m[3]) !== size)) {
    throw new AgentError('REGISTRY_PROTOCOL', `blob ${d.digest}: resume answered with Content-Range "${value.slice(0, 80)}", wanted bytes ${offset}-${size - 1}/${size}`, {
      details: { digest: d.digest, content_range: value.slice(0, 80) },
    });
  }
}

/** One blob download across its attempts: what was hashed, what the consumer already has. */
class BlobDownload {
  readonly #session: RegistrySession;
  readonly #d: Descriptor;
  readonly #options: BlobOptions;
  readonly #algorithm: DigestAlgorithm;
  readonly #path: string;
  /** Bytes handed to the consumer (yielded or batched): never taken back. */
  #emitted = 0;
  #hasher: Hash;
  /** Bytes fed to `#hasher`, i.e. where the next Range starts. */
  #position = 0;
  #useRange = true;
  #resumes = 0;
  #lastProgress = 0;
  /** After a restart from zero, the bytes already emitted are re-read and must hash the same. */
  #prefixCheck: { expected: string; hash: Hash } | undefined;
  // Fresh bytes counted in `#emitted` but not yet yielded: TLS delivers 16 KiB chunks, and every
  // consumer layer pays per chunk, so they leave in ~64 KiB batches (one copy).
  #batch: Buffer[] = [];
  #batched = 0;

  constructor(session: RegistrySession, d: Descriptor, options: BlobOptions) {
    this.#algorithm = parseDigest(d.digest).algorithm;
    this.#session = session;
    this.#d = d;
    this.#options = options;
    this.#path = `/v2/${session.repository}/blobs/${d.digest}`;
    this.#hasher = createDigestHash(this.#algorithm);
  }

  get batchFull(): boolean {
    return this.#batched >= BATCH_BYTES;
  }

  get batchEmpty(): boolean {
    return this.#batched === 0;
  }

  verifyEmpty(): void {
    if (`${this.#algorithm}:${this.#hasher.digest('hex')}` !== this.#d.digest) throw mismatch(this.#d, 'empty blob digest mismatch');
  }

  /** The response for what is still missing; its body is cancelled if it is refused. */
  async request(): Promise<HttpResponse> {
    const ranged = this.#position > 0 && this.#useRange;
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (ranged) headers['range'] = `bytes=${this.#position}-${this.#d.size - 1}`;
    const res = await this.#session.request(this.#path, { headers, signal: this.#options.signal });
    try {
      await this.#accept(res, ranged);
      return res;
    } catch (err) {
      cancelBody(res);
      throw err;
    }
  }

  // 206 must continue exactly where we stopped; 200 is the whole blob again, from zero.
  async #accept(res: HttpResponse, ranged: boolean): Promise<void> {
    const d = this.#d;
    if (ranged && res.statusCode === 416) {
      this.#useRange = false;
      throw new Truncated('range not satisfiable; restarting from zero');
    }
    if (res.statusCode !== 200 && !(ranged && res.statusCode === 206)) throw await this.#session.failure(res, `blob ${d.digest}`);
    if (res.statusCode === 206) {
      checkContentRange(res, this.#position, d.size, d);
      return;
    }
    const length = Number(header(res, 'content-length'));
    if (Number.isFinite(length) && length !== d.size) throw mismatch(d, `Content-Length ${length} differs from the descriptor size`);
    if (this.#position > 0) this.#restartFromZero();
  }

  #restartFromZero(): void {
    if (this.#prefixCheck) this.#prefixCheck.hash = createDigestHash(this.#algorithm);
    else this.#prefixCheck = { expected: this.#hasher.copy().digest('hex'), hash: createDigestHash(this.#algorithm) };
    this.#hasher = createDigestHash(this.#algorithm);
    this.#position = 0;
  }

  /** Hashes one network chunk and batches the part of it the consumer has not had yet. */
  add(chunk: Buffer): void {
    const d = this.#d;
    if (this.#position + chunk.length > d.size) throw mismatch(d, `more bytes than the descriptor size ${d.size}`);
    this.#hasher.update(chunk);
    let fresh = chunk;
    if (this.#position < this.#emitted) {
      const overlap = Math.min(chunk.length, this.#emitted - this.#position);
      this.#prefixCheck?.hash.update(chunk.subarray(0, overlap));
      fresh = chunk.subarray(overlap);
      if (this.#position + overlap === this.#emitted && this.#prefixCheck) {
        if (this.#prefixCheck.hash.digest('hex') !== this.#prefixCheck.expected) throw mismatch(d, 'content changed between attempts');
        this.#prefixCheck = undefined;
      }
    }
    this.#position += chunk.length;
    if (fresh.length > 0) {
      this.#emitted += fresh.length;
      this.#batch.push(fresh);
      this.#batched += fresh.length;
    }
  }

  takeBatch(): Buffer {
    const out = this.#batch.length === 1 ? this.#batch[0]! : Buffer.concat(this.#batch, this.#batched);
    this.#batch = [];
    this.#batched = 0;
    const { onProgress } = this.#options;
    if (onProgress && (this.#emitted - this.#lastProgress >= PROGRESS_STEP || this.#emitted === this.#d.size)) {
      this.#lastProgress = this.#emitted;
      onProgress({ digest: this.#d.digest, bytes: this.#emitted, total: this.#d.size });
    }
    return out;
  }

  /** After a response body ended: everything arrived and hashes to the digest, or it throws. */
  verifyComplete(): void {
    const d = this.#d;
    if (this.#position < d.size) throw new Truncated(`stream ended after ${this.#position} of ${d.size} bytes`);
    const actual = `${this.#algorithm}:${this.#hasher.digest('hex')}`;
    if (actual !== d.digest) throw mismatch(d, `digest mismatch (got ${actual})`, { actual });
  }

  /** Rethrows what a resume cannot fix: a cancellation, or an error other than an interruption. */
  checkResumable(err: unknown): void {
    const aborted = cancelled(this.#options.signal, err);
    if (aborted) throw aborted;
    if (!(err instanceof Truncated) && !isRetryableNetworkError(err)) throw err;
  }

  /** Counts one more interruption and waits the retry delay; throws once there were too many. */
  async waitBeforeResume(err: unknown): Promise<void> {
    const { signal } = this.#options;
    const maxResumes = this.#options.maxResumes ?? 5;
    const d = this.#d;
    const http = this.#session.options.http;
    if (++this.#resumes > maxResumes) {
      throw new AgentError('REGISTRY_UNREACHABLE', `blob ${d.digest}: interrupted ${this.#resumes} times, giving up at ${this.#emitted} of ${d.size} bytes`, {
        cause: err, details: { digest: d.digest, bytes: this.#emitted, total: d.size },
      });
    }
    http.log.warn({ digest: d.digest, bytes: this.#emitted, total: d.size, attempt: this.#resumes, err }, 'blob download interrupted; resuming');
    await http.sleep(retryDelay(http.retry, this.#resumes, undefined, http.random), signal).catch((e: unknown) => {
      throw cancelled(signal, e) ?? e;
    });
  }
}

/**
 * The blob's bytes as an async iterator, in ~64 KiB batches; it throws (before ending) if the
 * size or digest is wrong, so a loop over it only completes for verified content. For consumers
 * that iterate anyway: no stream layer between the network and them. Ending the iteration early
 * (`return()`, `break`) cancels the download.
 */
export async function* openBlobChunks(session: RegistrySession, d: Descriptor, options: BlobOptions = {}): AsyncGenerator<Buffer> {
  const download = new BlobDownload(session, d, options);
  if (d.size === 0) {
    download.verifyEmpty();
    return;
  }
  for (;;) {
    let res: HttpResponse | undefined;
    try {
      res = await download.request();
      for await (const chunk of res.body) {
        download.add(chunk as Buffer);
        if (download.batchFull) yield download.takeBatch();
      }
      if (!download.batchEmpty) yield download.takeBatch();
      download.verifyComplete();
      return;
    } catch (err) {
      if (res) cancelBody(res);
      download.checkResumable(err);
      // Bytes already counted as emitted (hashed, in order) go out before the retry.
      if (!download.batchEmpty) yield download.takeBatch();
      await download.waitBeforeResume(err);
    }
  }
}

/**
 * A Readable of the blob's bytes. It errors (before ending) if the size or digest is wrong, so
 * `pipeline(openBlobStream(…), sink)` only resolves for verified content.
 */
export function openBlobStream(session: RegistrySession, descriptor: Descriptor, options: BlobOptions = {}): Readable {
  return Readable.from(openBlobChunks(session, descriptor, options), { objectMode: false });
}
