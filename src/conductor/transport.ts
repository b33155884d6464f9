/**
 * HTTP to the Ironic API over undici: one Agent with our TLS and timeout settings, the common
 * headers, the api_url list tried in order (sticking to the first that answered), bounded
 * reads, and bodies that are always consumed.
 * @module
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import type { Config } from '../config/index.ts';
import { AgentError, isAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { cancelled } from './clock.ts';

export type TransportConfig = Pick<Config, 'api_url' | 'insecure' | 'ca_file' | 'global_request_id' | 'http_request_timeout'>;

export interface TransportOptions {
  config: TransportConfig;
  log: Logger;
  agentVersion: string;
  /** Use this dispatcher instead of creating one (tests: MockAgent); it is not closed by close(). */
  dispatcher?: Dispatcher;
}

export interface TransportRequest {
  method: 'GET' | 'POST';
  /** Path after the API URL, starting with `/`. */
  path: string;
  query?: Record<string, string | undefined>;
  headers?: Record<string, string>;
  body?: unknown;
  signal?: AbortSignal | undefined;
}

export interface TransportResponse {
  status: number;
  text: string;
  /** The API URL that answered. */
  apiUrl: string;
}

export interface Transport {
  /** The API URL tried first (the last one that answered). */
  readonly apiUrl: string;
  send(req: TransportRequest): Promise<TransportResponse>;
  close(): Promise<void>;
}

const MAX_REPLY_BYTES = 8 * 1024 * 1024;

// `ca_file` adds to the system CAs, as its help text says, rather than replacing them. The
// context is built once: given `ca`, Node would build one per connection (every heartbeat
// opens one), re-parsing the whole root store each time.
function createDispatcher(config: TransportConfig): Agent {
  let secureContext: SecureContext | undefined;
  if (config.ca_file) {
    let pem: string;
    try {
      pem = readFileSync(config.ca_file, 'utf8');
    } catch (err) {
      throw new AgentError('CONFIG_INVALID', `ca_file ${config.ca_file} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    try {
      secureContext = createSecureContext({ ca: [...rootCertificates, pem] });
    } catch (err) {
      throw new AgentError('CONFIG_INVALID', `ca_file ${config.ca_file} holds no usable CA certificate: ${(err as Error).message}`, { cause: err });
    }
  }
  const timeoutMs = config.http_request_timeout * 1000;
  return new Agent({
    connect: { rejectUnauthorized: !config.insecure, ...(secureContext ? { secureContext } : {}), timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    // IPA keeps at most 2 connections to the API; a heartbeat and a lookup never overlap.
    connections: 2,
  });
}

// Reads the whole reply, refusing more than MAX_REPLY_BYTES.
async function readText(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_REPLY_BYTES) {
      body.destroy();
      throw new AgentError('CONDUCTOR_PROTOCOL', `The Ironic API reply exceeds ${MAX_REPLY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function createTransport(options: TransportOptions): Transport {
  const urls = (options.config.api_url ?? []).map((u) => u.replace(/\/+$/, ''));
  if (urls.length === 0) throw new AgentError('CONFIG_INVALID', 'No Ironic API URL (api_url / ipa-api-url) is configured');
  const log = options.log.child({ component: 'conductor' });
  const ownDispatcher = options.dispatcher ? undefined : createDispatcher(options.config);
  const dispatcher = options.dispatcher ?? ownDispatcher!;
  const timeoutMs = options.config.http_request_timeout * 1000;
  let active = 0;

  const baseHeaders: Record<string, string> = {
    accept: 'application/json',
    'user-agent': `bootc-agent/${options.agentVersion}`,
  };
  if (options.config.global_request_id) baseHeaders['x-openstack-request-id'] = options.config.global_request_id;

  // One attempt against one URL; transport failures throw, any HTTP status returns.
  async function attempt(apiUrl: string, req: TransportRequest): Promise<TransportResponse> {
    const url = new URL(`${apiUrl}${req.path}`);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers = { ...baseHeaders, ...req.headers };
    let body: string | undefined;
    if (req.body !== undefined) {
      body = JSON.stringify(req.body);
      headers['content-type'] = 'application/json';
    }
    const signal = req.signal ? AbortSignal.any([req.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    const res = await request(url, { dispatcher, method: req.method, headers, body, signal });
    let consumed = false;
    try {
      const text = await readText(res.body);
      consumed = true;
      return { status: res.statusCode, text, apiUrl };
    } finally {
      if (!consumed) await res.body.dump().catch(() => undefined);
    }
  }

  return {
    get apiUrl() {
      return urls[active]!;
    },
    async send(req) {
      const order = [active, ...urls.keys()].filter((i, pos, all) => all.indexOf(i) === pos);
      const failures: string[] = [];
      let lastError: unknown;
      for (const index of order) {
        if (req.signal?.aborted) throw cancelled(req.signal.reason);
        try {
          const response = await attempt(urls[index]!, req);
          if (index !== active) log.info({ apiUrl: urls[index] }, 'using this Ironic API URL from now on');
          active = index;
          return response;
        } catch (err) {
          if (req.signal?.aborted) throw cancelled(req.signal.reason);
          if (isAgentError(err)) throw err;
          lastError = err;
          failures.push(`${urls[index]}: ${describeTransportError(err)}`);
          log.debug({ err, apiUrl: urls[index], path: req.path }, 'Ironic API request failed');
        }
      }
      throw new AgentError('CONDUCTOR_PROTOCOL', `The Ironic API could not be reached (${failures.join('; ')})`, {
        cause: lastError,
        details: { reason: 'unreachable', api_urls: urls, path: req.path },
      });
    },
    async close() {
      await ownDispatcher?.close();
    },
  };
}

/** True for the error thrown when no API URL answered at all. */
export function isUnreachable(err: unknown): boolean {
  return isAgentError(err) && err.code === 'CONDUCTOR_PROTOCOL' && err.details.reason === 'unreachable';
}

function describeTransportError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: string }).code ?? (err.cause as { code?: string } | undefined)?.code;
  if (err.name === 'TimeoutError') return 'timed out';
  return code ? `${err.message} (${code})` : err.message;
}
