/**
 * An image served over http(s), as IPA's `_download_with_proxy` fetches it: one GET per URL,
 * connection errors and 5xx retried a few times, 4xx not, the `Authorization` header the
 * conductor supplied (`image_request_authorization`) sent as is. Proxies come from the
 * environment (HTTP(S)_PROXY, NO_PROXY).
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises';
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { AgentError, isAgentError } from '../errors.ts';

export interface HttpSourceOptions {
  signal?: AbortSignal | undefined;
  headers?: Record<string, string> | undefined;
  /** Our own dispatcher (tests, custom CAs); otherwise one is made from `ca`/`insecure`. */
  dispatcher?: Dispatcher | undefined;
  /** Extra trusted CA certificates (PEM). */
  ca?: string | undefined;
  /** Skip TLS verification (`ipa-insecure`). */
  insecure?: boolean | undefined;
  /** Connect, headers and between-chunks timeout (IPA: 60 s). */
  timeoutMs?: number | undefined;
  /** Retries after a connection error or 5xx (IPA `image_download_connection_retries`). */
  retries?: number | undefined;
  retryDelayMs?: number | undefined;
}

export interface OpenedSource {
  chunks: AsyncIterable<Buffer>;
  /** Bytes the server announced (Content-Length), when it did. */
  size?: number | undefined;
  /** Closes the connection and the dispatcher made here. */
  close(): Promise<void>;
}

/** The URL without credentials or query (temp URLs carry their signature in the query). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}${parsed.search ? '?…' : ''}`;
  } catch {
    return '<unparsable URL>';
  }
}

function ownDispatcher(options: HttpSourceOptions): Dispatcher {
  const timeout = options.timeoutMs ?? 60_000;
  const tls = { rejectUnauthorized: !options.insecure, ...(options.ca ? { ca: options.ca } : {}) };
  return new EnvHttpProxyAgent({ connect: { ...tls, timeout }, requestTls: tls, headersTimeout: timeout, bodyTimeout: timeout });
}

async function bodySnippet(body: AsyncIterable<Uint8Array> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      chunks.push(Buffer.from(c));
      n += c.length;
      if (n >= 300) break;
    }
  } catch {
    // The status is what matters.
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks).subarray(0, 300).toString('utf8').replace(/\s+/g, ' ').trim();
}

export class HttpStatusError extends AgentError {
  readonly statusCode: number;
  constructor(url: string, statusCode: number, body: string) {
    super('IMAGE_DOWNLOAD_FAILED', `Received status code ${statusCode} from ${redactUrl(url)}, expected 200${body ? `. Response body: ${body}` : ''}`, {
      details: { url: redactUrl(url), status: statusCode },
    });
    this.statusCode = statusCode;
  }
}

function networkError(url: string, err: unknown, signal: AbortSignal | undefined): AgentError {
  if (isAgentError(err)) return err;
  if (signal?.aborted) return new AgentError('CANCELLED', 'The image download was cancelled', { cause: signal.reason ?? err });
  const code = (err as { code?: unknown } | null)?.code;
  return new AgentError('IMAGE_DOWNLOAD_FAILED', `Cannot download ${redactUrl(url)}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err, details: { url: redactUrl(url), ...(typeof code === 'string' ? { error_code: code } : {}) },
  });
}

/** GET `url`; resolves once a 200 arrived, with the body still to be read. */
export async function openHttpSource(url: string, options: HttpSourceOptions = {}): Promise<OpenedSource> {
  const base = options.dispatcher ?? ownDispatcher(options);
  const own = options.dispatcher ? undefined : base;
  const dispatcher = base.compose(interceptors.redirect({ maxRedirections: 5 }));
  const retries = options.retries ?? 3;
  const timeout = options.timeoutMs ?? 60_000;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await request(url, {
          method: 'GET', dispatcher, headersTimeout: timeout, bodyTimeout: timeout,
          headers: { 'accept-encoding': 'identity', ...options.headers },
          ...(options.signal ? { signal: options.signal } : {}),
        });
        if (res.statusCode !== 200) throw new HttpStatusError(url, res.statusCode, await bodySnippet(res.body));
        const length = Number(res.headers['content-length']);
        const body = res.body;
        return {
          chunks: (async function* () {
            try {
              for await (const chunk of body) yield chunk as Buffer;
            } catch (err) {
              throw networkError(url, err, options.signal);
            }
          })(),
          ...(Number.isSafeInteger(length) && length >= 0 ? { size: length } : {}),
          close: async () => {
            body.destroy();
            await own?.close().catch(() => undefined);
          },
        };
      } catch (err) {
        const e = networkError(url, err, options.signal);
        const retryable = e.code === 'IMAGE_DOWNLOAD_FAILED' && (!(e instanceof HttpStatusError) || e.statusCode >= 500);
        if (!retryable || attempt >= retries) throw e;
        await delay(options.retryDelayMs ?? 2000, undefined, options.signal ? { signal: options.signal } : {}).catch(() => {
          throw new AgentError('CANCELLED', 'The image download was cancelled', { cause: options.signal?.reason });
        });
      }
    }
  } catch (err) {
    await own?.close().catch(() => undefined);
    throw err;
  }
}
