/**
 * The one HTTP(S) downloader, for image URLs and config-drive URLs alike: a GET through a
 * proxy-aware agent (HTTP_PROXY, HTTPS_PROXY, NO_PROXY from the environment), TLS checked
 * against `ca` (else the system's roots) unless `insecure`, at most 5 redirects, a timeout for
 * connecting, for the response headers and for each wait between body chunks (60 s, as IPA), and
 * an optional deadline for the whole download. Connection errors and 5xx statuses are retried
 * `retries` times, other statuses never. The body is streamed: the caller iterates `chunks` and
 * always calls `close()`. Every failure carries the caller's error code (cancellation:
 * CANCELLED); URLs in messages and details are redacted.
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises';
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { AgentError, isAgentError, type ErrorCode } from '../errors.ts';
import { bodyExcerpt, EXCERPT_READ_BYTES } from './excerpt.ts';
import { MiB } from './sizes.ts';
import { hideSecrets, redactUrl, urlSecrets } from './url.ts';

/** Connect, headers and idle timeout when none is given (IPA's 60 s). */
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_REDIRECTIONS = 5;
export const DEFAULT_RETRY_DELAY_MS = 2000;

/** How to reach the server: what a caller's own settings (config, CLI flags, tests) map onto. */
export interface HttpTransportOptions {
  /** A dispatcher of the caller's (tests); otherwise one is made here from `ca`, `insecure` and `timeoutMs`. */
  dispatcher?: Dispatcher | undefined;
  /** Trusted CA certificates (PEM), used instead of the system's (as IPA's `verify=<ca_file>`). */
  ca?: string | undefined;
  /** Skip TLS verification (`ipa-insecure`). */
  insecure?: boolean | undefined;
  /** Limit for connecting, for the response headers and for each wait between body chunks (default 60 s). */
  timeoutMs?: number | undefined;
  /** Limit for the whole download, retries and body included (default: none). */
  deadlineMs?: number | undefined;
  /** Redirects followed (default 5). */
  maxRedirections?: number | undefined;
  /** Retries after a connection error or a 5xx status (default 0). */
  retries?: number | undefined;
  /** Wait before each retry (default 2 s). */
  retryDelayMs?: number | undefined;
}

export interface HttpDownloadOptions extends HttpTransportOptions {
  /** What is downloaded, for messages: "the image", "the config drive". */
  subject: string;
  /** The code of every failure but cancellation (which is CANCELLED). */
  errorCode: ErrorCode;
  signal?: AbortSignal | undefined;
  headers?: Record<string, string> | undefined;
  /** The only status accepted (image downloads want 200, as IPA); default: any 2xx. */
  okStatus?: number | undefined;
  /** The download fails once the body is known to be longer (Content-Length, or bytes counted). */
  maxBytes?: number | undefined;
  /** The code of that failure (default: `errorCode`). */
  tooLargeCode?: ErrorCode | undefined;
}

export interface HttpDownload {
  /** The body; a broken connection, the idle timeout, the deadline or `maxBytes` end it with the caller's error code. */
  chunks: AsyncIterable<Buffer>;
  /** Bytes the server announced (Content-Length), when it did. */
  size?: number | undefined;
  /** Ends the body, the deadline and the dispatcher made here; may be called more than once. */
  close(): Promise<void>;
}

interface Context {
  url: string;
  shown: string;
  /** What of the URL must not appear in a message even when a server or a library repeats it. */
  secrets: string[];
  options: HttpDownloadOptions;
  timeoutMs: number;
  /** The caller's signal and the deadline's, as one. */
  signal: AbortSignal | undefined;
  deadline: AbortController | undefined;
}

// Failures worth another attempt: connection errors (timeouts included) and 5xx statuses.
const transient = new WeakSet<AgentError>();

function ownDispatcher(options: HttpTransportOptions): Dispatcher {
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const tls = { rejectUnauthorized: !options.insecure, ...(options.ca ? { ca: options.ca } : {}) };
  return new EnvHttpProxyAgent({ connect: { ...tls, timeout }, requestTls: tls, headersTimeout: timeout, bodyTimeout: timeout });
}

function downloadError(ctx: Context, reason: string, options: { code?: ErrorCode; cause?: unknown; details?: Record<string, unknown> } = {}): AgentError {
  return new AgentError(options.code ?? ctx.options.errorCode, `Cannot download ${ctx.options.subject} from ${ctx.shown}: ${reason}`, {
    ...(options.cause === undefined ? {} : { cause: options.cause }),
    details: { url: ctx.shown, ...options.details },
  });
}

// The deadline's error is made when it passes, as the abort reason the request then fails with.
function startDeadline(ctx: Context, ms: number): NodeJS.Timeout {
  const timer = setTimeout(() => {
    ctx.deadline?.abort(downloadError(ctx, `not finished within the download deadline of ${ms / 1000} s`, { details: { deadline_ms: ms } }));
  }, ms);
  timer.unref();
  return timer;
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  const code = (err as { code?: unknown } | null)?.code;
  const seconds = timeoutMs / 1000;
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return `no connection within ${seconds} s (${code})`;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return `no data for ${seconds} s (${code})`;
  return (err as Error | null)?.message ?? String(err);
}

// Whatever a request, a retry wait or a body read threw, as the error the caller sees.
function failure(ctx: Context, err: unknown): AgentError {
  if (ctx.options.signal?.aborted) {
    return new AgentError('CANCELLED', `Downloading ${ctx.options.subject} was cancelled`, { cause: ctx.options.signal.reason ?? err });
  }
  if (isAgentError(err)) return err;
  const reason = ctx.deadline?.signal.aborted ? ctx.deadline.signal.reason : undefined;
  if (isAgentError(reason)) return reason;
  const code = (err as { code?: unknown } | null)?.code;
  const e = downloadError(ctx, hideSecrets(describeNetworkError(err, ctx.timeoutMs), ctx.secrets), { cause: err, details: typeof code === 'string' ? { error_code: code } : {} });
  transient.add(e);
  return e;
}

function tooLarge(ctx: Context, maxBytes: number, bytes: number): AgentError {
  const limit = maxBytes >= MiB ? `${Math.floor(maxBytes / MiB)} MiB` : `${maxBytes} bytes`;
  return downloadError(ctx, `it is more than ${limit}, the most accepted`, {
    code: ctx.options.tooLargeCode ?? ctx.options.errorCode,
    details: { max_download_bytes: maxBytes, size_bytes_at_least: bytes },
  });
}

// Destroying a body nobody read makes undici emit an error: with no listener, an uncaught one.
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

async function readExcerpt(ctx: Context, body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= EXCERPT_READ_BYTES) break;
    }
  } catch {
    // The status is what matters; a body that breaks off just gives a shorter excerpt.
  } finally {
    discard(body);
  }
  return bodyExcerpt(Buffer.concat(chunks).subarray(0, EXCERPT_READ_BYTES), ctx.secrets);
}

async function statusError(ctx: Context, res: Dispatcher.ResponseData): Promise<AgentError> {
  const status = res.statusCode;
  const expected = ctx.options.okStatus ?? 'a 2xx status';
  const redirects = status >= 300 && status < 400 ? ` after following ${ctx.options.maxRedirections ?? DEFAULT_MAX_REDIRECTIONS} redirects at most` : '';
  const excerpt = await readExcerpt(ctx, res.body);
  const e = new AgentError(ctx.options.errorCode, `Received status code ${status} from ${ctx.shown}${redirects}, expected ${expected}${excerpt ? `. Response body: ${excerpt}` : ''}`, {
    details: { url: ctx.shown, status },
  });
  if (status >= 500) transient.add(e);
  return e;
}

// One GET; resolves with a response whose status is accepted and whose announced size fits.
async function attempt(ctx: Context, dispatcher: Dispatcher): Promise<Dispatcher.ResponseData> {
  const res = await request(ctx.url, {
    method: 'GET', dispatcher, headersTimeout: ctx.timeoutMs, bodyTimeout: ctx.timeoutMs,
    headers: { 'accept-encoding': 'identity', ...ctx.options.headers },
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  const ok = ctx.options.okStatus === undefined ? res.statusCode >= 200 && res.statusCode < 300 : res.statusCode === ctx.options.okStatus;
  if (!ok) throw await statusError(ctx, res);
  const announced = Number(res.headers['content-length']);
  const { maxBytes } = ctx.options;
  if (maxBytes !== undefined && Number.isFinite(announced) && announced > maxBytes) {
    discard(res.body);
    throw tooLarge(ctx, maxBytes, announced);
  }
  return res;
}

async function respond(ctx: Context, dispatcher: Dispatcher): Promise<Dispatcher.ResponseData> {
  const retries = ctx.options.retries ?? 0;
  for (let n = 0; ; n++) {
    try {
      return await attempt(ctx, dispatcher);
    } catch (err) {
      const e = failure(ctx, err);
      if (!transient.has(e) || n >= retries) throw e;
      await delay(ctx.options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS, undefined, ctx.signal ? { signal: ctx.signal } : {}).catch((waitErr: unknown) => {
        throw failure(ctx, waitErr);
      });
    }
  }
}

// `ended` stops the deadline once the whole body is in; `release` is close()'s.
function streamBody(ctx: Context, res: Dispatcher.ResponseData, ended: () => void, release: () => Promise<void>): HttpDownload {
  const { maxBytes } = ctx.options;
  async function* chunks(): AsyncGenerator<Buffer> {
    let total = 0;
    try {
      for await (const chunk of res.body) {
        total += (chunk as Buffer).length;
        if (maxBytes !== undefined && total > maxBytes) throw tooLarge(ctx, maxBytes, total);
        yield chunk as Buffer;
      }
    } catch (err) {
      throw failure(ctx, err);
    }
    ended();
  }
  const announced = Number(res.headers['content-length']);
  return {
    chunks: chunks(),
    ...(Number.isSafeInteger(announced) && announced >= 0 ? { size: announced } : {}),
    close: async () => {
      discard(res.body);
      await release();
    },
  };
}

/**
 * GET `url`; resolves once an accepted status arrived, with the body still to be read.
 * @example
 * const download = await httpDownload(url, { subject: 'the image', errorCode: 'IMAGE_DOWNLOAD_FAILED', signal, ca });
 * try { for await (const chunk of download.chunks) hash.update(chunk); } finally { await download.close(); }
 */
export async function httpDownload(url: string, options: HttpDownloadOptions): Promise<HttpDownload> {
  const own = options.dispatcher ? undefined : ownDispatcher(options);
  const dispatcher = (options.dispatcher ?? own!).compose(interceptors.redirect({ maxRedirections: options.maxRedirections ?? DEFAULT_MAX_REDIRECTIONS }));
  const deadline = options.deadlineMs === undefined ? undefined : new AbortController();
  const signals = [options.signal, deadline?.signal].filter((s): s is AbortSignal => s !== undefined);
  const ctx: Context = {
    url, shown: redactUrl(url), secrets: urlSecrets(url), options, deadline,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0],
  };
  const timer = options.deadlineMs === undefined ? undefined : startDeadline(ctx, options.deadlineMs);
  const ended = () => clearTimeout(timer);
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    ended();
    await own?.close().catch(() => undefined);
  };
  try {
    return streamBody(ctx, await respond(ctx, dispatcher), ended, release);
  } catch (err) {
    await release();
    throw err;
  }
}
