/**
 * Fetching a config drive given as an `http://`/`https://` URL (a Swift temp URL when the
 * conductor stores config drives in an object store), as IPA's `get_configdrive` does: a GET,
 * status ≥ 400 fails, and the timeout applies to connecting and to each wait for data.
 * @module
 */
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { AgentError, isAgentError } from '../errors.ts';
import { MiB } from './stream.ts';

export interface DownloadOptions {
  signal?: AbortSignal | undefined;
  /** Connect, headers and between-chunks timeout (IPA: 60 s). */
  timeoutMs: number;
  /** The body is refused past this many bytes. */
  maxBytes: number;
  /** Our own dispatcher (tests, custom CAs); otherwise one is created and closed here. */
  dispatcher?: Dispatcher | undefined;
  /** Skip TLS verification (`ipa-insecure`), only for the dispatcher made here. */
  insecure?: boolean | undefined;
}

const MAX_REDIRECTIONS = 5;
const BODY_SNIPPET_BYTES = 512;

/** True for values the conductor sends as a URL rather than as content. */
export function isConfigDriveUrl(value: string): boolean {
  return /^https?:\/\//i.test(value.trim());
}

/** The URL without credentials or query: Swift temp URLs carry their signature in the query. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}${parsed.search ? '?…' : ''}`;
  } catch {
    return '<unparsable URL>';
  }
}

function downloadError(url: string, reason: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}): AgentError {
  return new AgentError('CONFIGDRIVE_DOWNLOAD_FAILED', `Can't download the config drive from ${redactUrl(url)}: ${reason}`, {
    ...options,
    details: { url: redactUrl(url), ...options.details },
  });
}

// Network errors become DOWNLOAD_FAILED, cancellation stays CANCELLED, ours pass through.
function wrap(url: string, err: unknown, signal: AbortSignal | undefined, timeoutMs: number): unknown {
  if (isAgentError(err)) return err;
  if (signal?.aborted) return new AgentError('CANCELLED', 'The config drive download was cancelled', { cause: signal.reason ?? err });
  const code = (err as { code?: unknown } | null)?.code;
  const timedOut = code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
  const reason = timedOut ? `no data for ${timeoutMs / 1000} s (${String(code)})` : (err as Error)?.message ?? String(err);
  return downloadError(url, reason, { cause: err, details: typeof code === 'string' ? { error_code: code } : {} });
}

// Even base64 of an incompressible gzip stays under the cap, so a longer body cannot decode
// to an image within the limit.
function bodyTooLarge(url: string, maxBytes: number, bytes: number): AgentError {
  return new AgentError('CONFIGDRIVE_TOO_LARGE', `Config drive size exceeds maximum limit: the download from ${redactUrl(url)} is more than ${Math.ceil(maxBytes / MiB)} MiB`, {
    details: { url: redactUrl(url), max_download_bytes: maxBytes, size_bytes_at_least: bytes },
  });
}

async function snippet(body: AsyncIterable<Uint8Array>): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    chunks.push(Buffer.from(chunk));
    length += chunk.length;
    if (length >= BODY_SNIPPET_BYTES) break;
  }
  return Buffer.concat(chunks).subarray(0, BODY_SNIPPET_BYTES).toString('utf8').replace(/\s+/g, ' ').trim();
}

function createOwnDispatcher(options: DownloadOptions): Dispatcher {
  const tls = { rejectUnauthorized: !options.insecure };
  return new EnvHttpProxyAgent({
    connect: { ...tls, timeout: options.timeoutMs },
    requestTls: tls,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
}

/**
 * Yield the response body chunk by chunk. Fails on a non-2xx status (naming it, with the
 * start of the body), on more than `maxBytes`, and on connection errors and timeouts.
 */
export async function* downloadConfigDrive(url: string, options: DownloadOptions): AsyncGenerator<Buffer> {
  const base = options.dispatcher ?? createOwnDispatcher(options);
  const own = options.dispatcher ? undefined : base;
  const dispatcher = base.compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS }));
  let body: (AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown }) | undefined;
  try {
    const res = await request(url, {
      method: 'GET',
      dispatcher,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    body = res.body;
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const text = await snippet(res.body);
      throw downloadError(url, `got status code ${res.statusCode}${text ? `, response body: ${text}` : ''}`, {
        details: { status: res.statusCode },
      });
    }
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > options.maxBytes) throw bodyTooLarge(url, options.maxBytes, declared);
    let total = 0;
    for await (const chunk of res.body) {
      total += chunk.length;
      if (total > options.maxBytes) throw bodyTooLarge(url, options.maxBytes, total);
      yield chunk as Buffer;
    }
  } catch (err) {
    throw wrap(url, err, options.signal, options.timeoutMs);
  } finally {
    body?.destroy();
    await own?.close().catch(() => undefined);
  }
}
