/**
 * Single HTTP exchanges over undici with our own dispatchers: network errors mapped to
 * AgentErrors, capped body reads, bodies always consumed or destroyed, retries with jitter.
 * @module
 */
import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import { AgentError, isAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { parseRetryAfter, retryDelay, RETRYABLE_STATUSES, type RetryPolicy } from './retry.ts';

export type HttpResponse = Dispatcher.ResponseData;

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';

export interface HttpRequest {
  url: URL;
  method?: HttpMethod;
  headers?: Record<string, string>;
  body?: string | Uint8Array | Readable;
  signal?: AbortSignal | undefined;
}

export interface HttpContext {
  dispatcherFor(url: URL): Promise<Dispatcher>;
  retry: RetryPolicy;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  now(): number;
  random(): number;
  log: Logger;
}

const RETRYABLE_ERROR_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_SOCKET',
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
]);

export function isRetryableNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRYABLE_ERROR_CODES.has(code);
}

export function header(res: HttpResponse, name: string): string | undefined {
  const value = res.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export function headerList(res: HttpResponse, name: string): string[] {
  const value = res.headers[name.toLowerCase()];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** Cancel a body we will not read; undici then emits an abort error nobody must treat as fatal. */
export function cancelBody(res: HttpResponse): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

/** Consume and drop a body we do not need (keeps the connection reusable, never leaks it). */
export async function discard(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 });
  } catch {
    cancelBody(res);
  }
}

/** Read at most `limit` bytes; more is REGISTRY_PROTOCOL (or `tooLarge` when given). */
export async function readBody(res: HttpResponse, limit: number, what: string, tooLarge?: () => AgentError): Promise<Buffer> {
  const declared = Number(header(res, 'content-length'));
  const fail = (): AgentError => tooLarge?.() ?? new AgentError('REGISTRY_PROTOCOL', `${what}: body larger than ${limit} bytes`, { details: { limit } });
  if (Number.isFinite(declared) && declared > limit) {
    cancelBody(res);
    throw fail();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      cancelBody(res);
      throw fail();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function cancelled(signal: AbortSignal | undefined, cause: unknown): AgentError | undefined {
  if (!signal?.aborted) return undefined;
  return new AgentError('CANCELLED', 'The registry operation was cancelled', { cause: signal.reason ?? cause });
}

/** One request; undici never follows redirects here (we do it by hand). */
export async function send(ctx: HttpContext, req: HttpRequest): Promise<HttpResponse> {
  const dispatcher = await ctx.dispatcherFor(req.url);
  try {
    return await request(req.url, {
      dispatcher,
      method: req.method ?? 'GET',
      headers: req.headers ?? {},
      ...(req.body !== undefined ? { body: req.body } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
    });
  } catch (err) {
    throw cancelled(req.signal, err) ?? err;
  }
}

/** Mark an error as a transient network failure once retries are exhausted. */
export function unreachable(url: URL, err: unknown): AgentError {
  const code = (err as { code?: unknown } | null)?.code;
  return new AgentError('REGISTRY_UNREACHABLE', `Cannot reach ${url.origin}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
    details: { origin: url.origin, ...(typeof code === 'string' ? { error_code: code } : {}) },
  });
}

/**
 * Run `attempt` until it returns a non-retryable response, retrying 408/429/5xx (honouring
 * `Retry-After`) and transient network errors, with backoff and jitter.
 */
export async function withRetries(
  ctx: HttpContext,
  url: URL,
  signal: AbortSignal | undefined,
  attempt: () => Promise<HttpResponse>,
): Promise<HttpResponse> {
  for (let n = 1; ; n++) {
    let res: HttpResponse;
    try {
      res = await attempt();
    } catch (err) {
      const aborted = cancelled(signal, err);
      if (aborted) throw aborted;
      if (isAgentError(err)) throw err;
      if (!isRetryableNetworkError(err) || n >= ctx.retry.maxAttempts) throw unreachable(url, err);
      const delay = retryDelay(ctx.retry, n, undefined, ctx.random);
      ctx.log.warn({ origin: url.origin, attempt: n, delay_ms: delay, error_code: (err as { code?: string }).code }, 'registry request failed; retrying');
      await sleepOrCancel(ctx, delay, signal);
      continue;
    }
    if (!RETRYABLE_STATUSES.has(res.statusCode) || n >= ctx.retry.maxAttempts) return res;
    const retryAfter = parseRetryAfter(header(res, 'retry-after'), ctx.now());
    await discard(res);
    const delay = retryDelay(ctx.retry, n, retryAfter, ctx.random);
    ctx.log.warn({ origin: url.origin, status: res.statusCode, attempt: n, delay_ms: delay }, 'registry busy; retrying');
    await sleepOrCancel(ctx, delay, signal);
  }
}

async function sleepOrCancel(ctx: HttpContext, ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await ctx.sleep(ms, signal);
  } catch (err) {
    throw cancelled(signal, err) ?? err;
  }
}
