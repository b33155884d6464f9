/**
 * A session with one repository on one registry (or mirror): `/v2/` ping, then requests that
 * follow redirects by hand (≤ 10 hops, never https→http, `Authorization` only on the registry's
 * origin), answer 401 challenges once, and retry 429/5xx by re-entering through the registry URL.
 * @module
 */
import { AgentError } from '../errors.ts';
import { RegistryAuth } from './auth.ts';
import { parseWwwAuthenticate } from './challenge.ts';
import type { Credentials } from './credentials.ts';
import type { Readable } from 'node:stream';
import {
  cancelBody, discard, header, headerList, readBody, send, withRetries, type HttpContext, type HttpMethod, type HttpResponse,
} from './http.ts';
import { apiHost } from './reference.ts';

const MAX_REDIRECTS = 10;
const MAX_ERROR_BODY = 1024 * 1024;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface SessionOptions {
  registry: string;
  repository: string;
  insecure: boolean;
  credentials?: Credentials | undefined;
  http: HttpContext;
}

export interface SessionRequest {
  method?: HttpMethod;
  headers?: Record<string, string>;
  /** Called for every attempt (retries, redirects, auth renewals), so a stream body starts afresh. */
  body?: (() => string | Uint8Array | Readable) | undefined;
  /** Token scopes (default: pull on this repository). */
  scopes?: readonly string[] | undefined;
  /** false: one attempt, the caller restarts what it must (an upload session cannot be replayed mid-way). */
  retry?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

export class RegistrySession {
  readonly options: SessionOptions;
  readonly auth: RegistryAuth;
  #origin: URL;
  #ping: Promise<void> | undefined;
  #foreign = new Map<string, RegistryAuth>();
  #warnings = new Set<string>();

  constructor(options: SessionOptions) {
    this.options = options;
    this.#origin = new URL(`https://${apiHost(options.registry)}`);
    this.auth = this.#newAuth(this.#origin, options.insecure, options.credentials);
  }

  get origin(): URL {
    return this.#origin;
  }

  get repository(): string {
    return this.options.repository;
  }

  #newAuth(origin: URL, insecure: boolean, credentials: Credentials | undefined): RegistryAuth {
    const http = this.options.http;
    return new RegistryAuth({
      origin, insecure, credentials, http,
      sendTokenRequest: (req) => withRetries(http, req.url, req.signal, () => send(http, req)),
    });
  }

  ping(signal?: AbortSignal): Promise<void> {
    this.#ping ??= this.#doPing(signal).catch((err: unknown) => {
      this.#ping = undefined;
      throw err;
    });
    return this.#ping;
  }

  // https first; plain http only for a registry marked insecure in registries.conf.
  async #doPing(signal?: AbortSignal): Promise<void> {
    const http = this.options.http;
    let res: HttpResponse;
    try {
      const url = new URL('/v2/', this.#origin);
      res = await withRetries(http, url, signal, () => send(http, { url, signal }));
    } catch (err) {
      if (!this.options.insecure || (err as AgentError).code === 'CANCELLED') throw err;
      this.#origin = new URL(`http://${apiHost(this.options.registry)}`);
      this.auth.options.origin = this.#origin;
      http.log.warn({ registry: this.options.registry }, 'https failed for an insecure registry; using plain http');
      const url = new URL('/v2/', this.#origin);
      res = await withRetries(http, url, signal, () => send(http, { url, signal }));
    }
    if (res.statusCode === 401) this.auth.setChallenges(parseWwwAuthenticate(headerList(res, 'www-authenticate')));
    else if (res.statusCode !== 200) http.log.warn({ registry: this.options.registry, status: res.statusCode }, 'unexpected /v2/ answer');
    await discard(res);
  }

  /** A request to `path` on the registry; returns the final response (any status) for the caller to judge. */
  async request(path: string, init: SessionRequest = {}): Promise<HttpResponse> {
    await this.ping(init.signal);
    const scopes = [...(init.scopes ?? [`repository:${this.options.repository}:pull`])];
    const start = new URL(path, this.#origin);
    if (init.retry === false) return this.#follow(start, init, scopes);
    return withRetries(this.options.http, start, init.signal, () => this.#follow(start, init, scopes));
  }

  /** The scopes a push to this repository needs (plus pull on a repository blobs are mounted from). */
  pushScopes(mountFrom?: string): string[] {
    const own = `repository:${this.options.repository}:pull,push`;
    return mountFrom && mountFrom !== this.options.repository ? [own, `repository:${mountFrom}:pull`] : [own];
  }

  async #follow(start: URL, init: SessionRequest, scopes: string[]): Promise<HttpResponse> {
    let url = start;
    const retriedAuth = new Set<string>();
    for (let hop = 0; hop <= MAX_REDIRECTS; ) {
      const own = url.origin === this.#origin.origin;
      const auth = own ? this.auth : this.#foreign.get(url.origin);
      const authorization = await auth?.authorization(scopes, init.signal);
      const headers: Record<string, string> = { ...init.headers, ...(authorization ? { authorization } : {}) };
      const body = init.body?.();
      const res = await send(this.options.http, { url, method: init.method ?? 'GET', headers, signal: init.signal, ...(body !== undefined ? { body } : {}) });
      this.#logWarnings(res);
      const location = header(res, 'location');
      if (REDIRECT_STATUSES.has(res.statusCode) && location) {
        await discard(res);
        url = this.#redirectTarget(url, location);
        hop++;
        continue;
      }
      if (res.statusCode === 401 && !retriedAuth.has(url.origin)) {
        const challenges = parseWwwAuthenticate(headerList(res, 'www-authenticate'));
        let target = auth;
        if (!own && !target) {
          // Another origin (a CDN) with its own challenge: an anonymous exchange, never our credentials.
          target = this.#newAuth(new URL(url.origin), false, undefined);
          this.#foreign.set(url.origin, target);
        }
        if (target && target.handleUnauthorized(challenges, scopes, authorization !== undefined) === 'retry') {
          await discard(res);
          retriedAuth.add(url.origin);
          continue;
        }
      }
      return res;
    }
    throw new AgentError('REGISTRY_PROTOCOL', `More than ${MAX_REDIRECTS} redirects from ${start.origin}${start.pathname}`, {
      details: { origin: start.origin },
    });
  }

  #redirectTarget(from: URL, location: string): URL {
    let next: URL;
    try {
      next = new URL(location, from);
    } catch (err) {
      throw new AgentError('REGISTRY_PROTOCOL', `Invalid redirect from ${from.origin}`, { cause: err });
    }
    if (next.protocol !== 'https:' && next.protocol !== 'http:') {
      throw new AgentError('REGISTRY_PROTOCOL', `Redirect to unsupported scheme ${next.protocol}`, { details: { origin: from.origin } });
    }
    if (from.protocol === 'https:' && next.protocol === 'http:') {
      throw new AgentError('REGISTRY_PROTOCOL', `Refusing a redirect from https to plain http (${next.origin})`, {
        details: { from: from.origin, to: next.origin },
      });
    }
    return next;
  }

  // distribution-spec: report `Warning: 299 - "text"` headers once, never act on them.
  #logWarnings(res: HttpResponse): void {
    for (const value of headerList(res, 'warning')) {
      const text = /^299\s+\S+\s+"((?:[^"\\]|\\.)*)"/.exec(value)?.[1];
      if (text && !this.#warnings.has(text)) {
        this.#warnings.add(text);
        this.options.http.log.warn({ registry: this.options.registry, warning: text }, 'registry warning');
      }
    }
  }

  /** Turn a non-success response into the matching AgentError (reads a capped error body). */
  async failure(res: HttpResponse, what: string): Promise<AgentError> {
    let codes: string[] = [];
    let messages: string[] = [];
    try {
      const body = await readBody(res, MAX_ERROR_BODY, what);
      const json = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
      codes = (json.errors ?? []).map((e) => String(e.code ?? ''));
      messages = (json.errors ?? []).map((e) => String(e.message ?? ''));
    } catch {
      cancelBody(res);
    }
    const status = res.statusCode;
    const notFound = status === 404 || codes.some((c, i) => c === 'UNKNOWN' && /not found/i.test(messages[i] ?? ''));
    const code = notFound ? 'REGISTRY_NOT_FOUND'
      : status === 401 || status === 403 ? 'REGISTRY_AUTH_FAILED'
      : status === 429 || status >= 500 ? 'REGISTRY_UNAVAILABLE'
      : 'REGISTRY_PROTOCOL';
    const detail = messages.filter((m) => m !== '').join('; ').slice(0, 300);
    return new AgentError(code, `${what}: HTTP ${status}${detail ? ` (${detail})` : ''}`, {
      details: { registry: this.options.registry, repository: this.options.repository, status, ...(codes.length ? { registry_errors: codes } : {}) },
    });
  }
}
