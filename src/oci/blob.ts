/**
 * Blob streaming: size and digest verified on the fly, resume with a bounded `Range` after an
 * interruption (206 + exact `Content-Range` required; 200 restarts from zero with the already
 * emitted prefix re-checked; 416 restarts once), every attempt re-entering via the registry URL.
 * Given several sessions (mirrors, then the origin), a source that gives up hands the download to
 * the next one at the byte it reached: the hash state and the emitted prefix carry over.
 * @module
 */
import type { Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { AgentError, isAgentError, type ErrorCode } from '../errors.ts';
import { createDigestHash, parseDigest, type DigestAlgorithm } from './digest.ts';
import { cancelBody, cancelled, header, isRetryableNetworkError, type HttpResponse } from './http.ts';
import { retryDelay } from './retry.ts';
import { createStreamHash, wantsHashThread, type StreamHash } from './stream-hash.ts';
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
  /** Interruptions to resume from before a source gives up (default 5, counted per source). */
  maxResumes?: number | undefined;
  /**
   * Called when the download moves on to `sessions[index]` because the previous source gave up
   * with `err`; the last call names the source that served the rest of the blob.
   */
  onSource?: ((index: number, err: unknown) => void) | undefined;
}

/** One source that gave up, as the final error's details list it. */
export interface BlobSourceFailure {
  registry: string;
  repository: string;
  code: string;
  message: string;
}

const PROGRESS_STEP = 1024 * 1024;
const BATCH_BYTES = 64 * 1024;

class Truncated extends Error {
  readonly code = 'BLOB_TRUNCATED';
}

/** An interruption the same source may resume from: a cut body or a transient network error. */
function isInterruption(err: unknown): boolean {
  return err instanceof Truncated || isRetryableNetworkError(err);
}

/**
 * What another source cannot fix either: a cancellation, content that contradicts the descriptor,
 * or an error that is neither the registry's nor the network's.
 */
function isFinal(err: unknown, signal: AbortSignal | undefined): boolean {
  if (cancelled(signal, err)) return true;
  if (isAgentError(err)) return !err.code.startsWith('REGISTRY_');
  return !isInterruption(err) && typeof (err as { code?: unknown } | null)?.code !== 'string';
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
  readonly #sessions: readonly RegistrySession[];
  readonly #d: Descriptor;
  readonly #options: BlobOptions;
  readonly #algorithm: DigestAlgorithm;
  /** The source in use: an index into `#sessions`. */
  #source = 0;
  readonly #failures: { err: unknown; failure: BlobSourceFailure }[] = [];
  /** Bytes handed to the consumer (yielded or batched): never taken back. */
  #emitted = 0;
  #hasher: StreamHash;
  /** Bytes fed to `#hasher`, i.e. where the next Range starts. */
  #position = 0;
  #useRange = true;
  /** Interruptions of the current source. */
  #resumes = 0;
  #lastProgress = 0;
  /** After a restart from zero, the bytes already emitted are re-read and must hash the same. */
  #prefixCheck: { expected: string; hash: Hash } | undefined;
  // Fresh bytes counted in `#emitted` but not yet yielded: TLS delivers 16 KiB chunks, and every
  // consumer layer pays per chunk, so they leave in ~64 KiB batches (one copy).
  #batch: Buffer[] = [];
  #batched = 0;

  constructor(sessions: readonly RegistrySession[], d: Descriptor, options: BlobOptions) {
    if (sessions.length === 0) throw new AgentError('INTERNAL', `blob ${d.digest}: no source to download it from`);
    this.#algorithm = parseDigest(d.digest).algorithm;
    this.#sessions = sessions;
    this.#d = d;
    this.#options = options;
    this.#hasher = this.#newHasher();
  }

  #newHasher(): StreamHash {
    return createStreamHash(this.#algorithm, wantsHashThread(this.#d.size));
  }

  get #session(): RegistrySession {
    return this.#sessions[this.#source]!;
  }

  get batchFull(): boolean {
    return this.#batched >= BATCH_BYTES;
  }

  get batchEmpty(): boolean {
    return this.#batched === 0;
  }

  async verifyEmpty(): Promise<void> {
    if (`${this.#algorithm}:${await this.#hasher.digest()}` !== this.#d.digest) throw mismatch(this.#d, 'empty blob digest mismatch');
  }

  /** The response for what is still missing; its body is cancelled if it is refused. */
  async request(): Promise<HttpResponse> {
    const ranged = this.#position > 0 && this.#useRange;
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (ranged) headers['range'] = `bytes=${this.#position}-${this.#d.size - 1}`;
    const session = this.#session;
    const res = await session.request(`/v2/${session.repository}/blobs/${this.#d.digest}`, { headers, signal: this.#options.signal });
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
    if (this.#position > 0) await this.#restartFromZero();
  }

  async #restartFromZero(): Promise<void> {
    if (this.#prefixCheck) this.#prefixCheck.hash = createDigestHash(this.#algorithm);
    else this.#prefixCheck = { expected: await this.#hasher.peek(), hash: createDigestHash(this.#algorithm) };
    this.#hasher.close();
    this.#hasher = this.#newHasher();
    this.#position = 0;
  }

  /**
   * Hashes one network chunk and batches the part of it the consumer has not had yet; a promise
   * when the hashing thread is behind (await it before the next chunk).
   */
  add(chunk: Buffer): Promise<void> | undefined {
    const d = this.#d;
    if (this.#position + chunk.length > d.size) throw mismatch(d, `more bytes than the descriptor size ${d.size}`);
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
    const hashing = this.#hasher.update(chunk);
    this.#position += chunk.length;
    if (fresh.length > 0) {
      this.#emitted += fresh.length;
      this.#batch.push(fresh);
      this.#batched += fresh.length;
    }
    return hashing;
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

  /** Ends the hashing (and its thread) whatever happened. */
  close(): void {
    this.#hasher.close();
  }

  /** After a response body ended: everything arrived and hashes to the digest, or it throws. */
  async verifyComplete(): Promise<void> {
    const d = this.#d;
    if (this.#position < d.size) throw new Truncated(`stream ended after ${this.#position} of ${d.size} bytes`);
    const actual = `${this.#algorithm}:${await this.#hasher.digest()}`;
    if (actual !== d.digest) throw mismatch(d, `digest mismatch (got ${actual})`, { actual });
  }

  /** Rethrows what neither a resume nor another source can fix. */
  checkFinal(err: unknown): void {
    const { signal } = this.#options;
    const aborted = cancelled(signal, err);
    if (aborted) throw aborted;
    if (isFinal(err, signal) || (this.#sessions.length === 1 && !isInterruption(err))) throw err;
  }

  /**
   * After a failed attempt: waits and resumes on the same source, or moves on to the next one
   * (from the byte reached), or throws once the last source gave up.
   */
  async afterFailure(err: unknown): Promise<void> {
    const maxResumes = this.#options.maxResumes ?? 5;
    let reason = err;
    if (isInterruption(err)) {
      if (++this.#resumes <= maxResumes) return this.#waitBeforeResume(err);
      reason = this.#tooManyInterruptions(err);
    }
    this.#failures.push({ err: reason, failure: this.#describe(reason) });
    if (this.#source + 1 >= this.#sessions.length) throw this.#finalError(reason);
    const from = this.#session.options.registry;
    this.#source++;
    this.#resumes = 0;
    this.#useRange = true;
    this.#session.options.http.log.warn({ digest: this.#d.digest, bytes: this.#emitted, total: this.#d.size, from, to: this.#session.options.registry, err: reason },
      'blob source gave up; continuing from the next source');
    this.#options.onSource?.(this.#source, reason);
  }

  #tooManyInterruptions(err: unknown): AgentError {
    const d = this.#d;
    return new AgentError('REGISTRY_UNREACHABLE', `blob ${d.digest}: interrupted ${this.#resumes} times, giving up at ${this.#emitted} of ${d.size} bytes`, {
      cause: err, details: { digest: d.digest, bytes: this.#emitted, total: d.size },
    });
  }

  #describe(err: unknown): BlobSourceFailure {
    const { registry, repository } = this.#session.options;
    const code = isAgentError(err) ? err.code : String((err as { code?: unknown } | null)?.code ?? 'ERROR');
    return { registry, repository, code, message: (err instanceof Error ? err.message : String(err)).slice(0, 200) };
  }

  // One source: its own error, as before there were several. Several: the last one's code, naming each.
  #finalError(last: unknown): unknown {
    if (this.#failures.length === 1) return last;
    const d = this.#d;
    const failures = this.#failures.map((f) => f.failure);
    const code: ErrorCode = isAgentError(last) ? last.code : 'REGISTRY_UNREACHABLE';
    const list = failures.map((f) => `${f.registry}/${f.repository}: ${f.message}`).join('; ');
    return new AgentError(code, `blob ${d.digest}: every source failed at ${this.#emitted} of ${d.size} bytes (${list})`, {
      cause: last, details: { digest: d.digest, bytes: this.#emitted, total: d.size, sources: failures },
    });
  }

  async #waitBeforeResume(err: unknown): Promise<void> {
    const { signal } = this.#options;
    const d = this.#d;
    const http = this.#session.options.http;
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
export async function* openBlobChunks(sessions: RegistrySession | readonly RegistrySession[], d: Descriptor, options: BlobOptions = {}): AsyncGenerator<Buffer> {
  const download = new BlobDownload(Array.isArray(sessions) ? sessions : [sessions as RegistrySession], d, options);
  try {
    if (d.size === 0) {
      await download.verifyEmpty();
      return;
    }
    for (;;) {
      let res: HttpResponse | undefined;
      try {
        res = await download.request();
        for await (const chunk of res.body) {
          const hashing = download.add(chunk as Buffer);
          if (hashing) await hashing;
          if (download.batchFull) yield download.takeBatch();
        }
        if (!download.batchEmpty) yield download.takeBatch();
        await download.verifyComplete();
        return;
      } catch (err) {
        if (res) cancelBody(res);
        download.checkFinal(err);
        // Bytes already counted as emitted (hashed, in order) go out before the retry.
        if (!download.batchEmpty) yield download.takeBatch();
        await download.afterFailure(err);
      }
    }
  } finally {
    download.close();
  }
}

/**
 * A Readable of the blob's bytes. It errors (before ending) if the size or digest is wrong, so
 * `pipeline(openBlobStream(…), sink)` only resolves for verified content.
 */
export function openBlobStream(sessions: RegistrySession | readonly RegistrySession[], descriptor: Descriptor, options: BlobOptions = {}): Readable {
  return Readable.from(openBlobChunks(sessions, descriptor, options), { objectMode: false });
}
