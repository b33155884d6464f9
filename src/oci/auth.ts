/**
 * Authentication for one registry origin: the challenge from `/v2/`, Bearer token exchange
 * (GET with Basic credentials; OAuth2 POST for identity tokens, GET on 404), a per-scope
 * single-flight cache with early renewal, Basic registries and direct registry tokens.
 * Credentials go only to this origin and to the realm it announced.
 * @module
 */
import { AgentError } from '../errors.ts';
import type { Challenge } from './challenge.ts';
import type { Credentials } from './credentials.ts';
import { discard, readBody, type HttpContext, type HttpRequest, type HttpResponse } from './http.ts';
import { TokenResponse } from './schemas.ts';

const MIN_TOKEN_LIFETIME_S = 60;
const MAX_TOKEN_BODY = 1024 * 1024;
export const CLIENT_ID = 'bootc-agent';

interface Token {
  value: string;
  expiresAt: number;
  renewAt: number;
}

export type UnauthorizedDecision = 'retry' | 'fail';

export interface RegistryAuthOptions {
  origin: URL;
  /** The registry is marked insecure: an http realm is tolerated. */
  insecure: boolean;
  credentials?: Credentials | undefined;
  http: HttpContext;
  /** Sends one token request with retries (the session's transport). */
  sendTokenRequest(req: HttpRequest): Promise<HttpResponse>;
}

export class RegistryAuth {
  #challenge: Challenge | undefined;
  #tokens = new Map<string, Promise<Token>>();
  readonly options: RegistryAuthOptions;

  constructor(options: RegistryAuthOptions) {
    this.options = options;
  }

  get scheme(): string | undefined {
    return this.#challenge?.scheme;
  }

  // Bearer wins over Basic when a registry offers both; unknown schemes are ignored.
  setChallenges(challenges: readonly Challenge[]): boolean {
    const chosen = challenges.find((c) => c.scheme === 'bearer' && c.params['realm']) ?? challenges.find((c) => c.scheme === 'basic');
    if (!chosen) return false;
    const changed = JSON.stringify(chosen) !== JSON.stringify(this.#challenge);
    this.#challenge = chosen;
    return changed;
  }

  /** The `Authorization` value for a request needing `scopes`, or undefined (anonymous). */
  async authorization(scopes: readonly string[], signal?: AbortSignal): Promise<string | undefined> {
    const creds = this.options.credentials;
    const challenge = this.#challenge;
    if (!challenge) return creds?.type === 'registry-token' ? `Bearer ${creds.token}` : undefined;
    if (challenge.scheme === 'basic') return creds?.type === 'basic' ? basicHeader(creds.username, creds.password) : undefined;
    if (creds?.type === 'registry-token') return `Bearer ${creds.token}`;
    const token = await this.#token(challenge, scopes, signal);
    return `Bearer ${token}`;
  }

  /** After a 401: decide whether a retry with new authorization can help. */
  handleUnauthorized(challenges: readonly Challenge[], scopes: string[], sentAuthorization: boolean): UnauthorizedDecision {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const error = bearer?.params['error'];
    const changed = this.setChallenges(challenges);
    if (error === 'insufficient_scope' && bearer?.params['scope']) {
      // New scopes first: some registries only look at the first scope parameter.
      const added = bearer.params['scope'].split(' ').filter((s) => s !== '' && !scopes.includes(s));
      scopes.unshift(...added);
      this.#forget(scopes);
      return 'retry';
    }
    if (error === 'invalid_token') {
      this.#tokens.clear();
      return this.options.credentials?.type === 'registry-token' ? 'fail' : 'retry';
    }
    if (changed || (!sentAuthorization && this.#challenge !== undefined && this.#canAuthenticate())) return 'retry';
    return 'fail';
  }

  #canAuthenticate(): boolean {
    return this.#challenge?.scheme === 'bearer' || this.options.credentials?.type === 'basic';
  }

  #forget(scopes: readonly string[]): void {
    if (this.#challenge) this.#tokens.delete(cacheKey(this.#challenge, scopes));
  }

  async #token(challenge: Challenge, scopes: readonly string[], signal?: AbortSignal): Promise<string> {
    const key = cacheKey(challenge, scopes);
    const now = this.options.http.now();
    const cached = this.#tokens.get(key);
    if (cached) {
      const token = await cached.catch(() => undefined);
      if (token && now < token.renewAt) return token.value;
      if (this.#tokens.get(key) === cached) this.#tokens.delete(key);
    }
    let pending = this.#tokens.get(key);
    if (!pending) {
      pending = this.#exchange(challenge, scopes, signal);
      this.#tokens.set(key, pending);
      pending.catch(() => this.#tokens.get(key) === pending && this.#tokens.delete(key));
    }
    return (await pending).value;
  }

  #realm(challenge: Challenge): URL {
    let realm: URL;
    try {
      realm = new URL(challenge.params['realm'] ?? '');
    } catch (err) {
      throw new AgentError('REGISTRY_PROTOCOL', `${this.options.origin.origin} announced an invalid token realm`, { cause: err });
    }
    const httpOk = this.options.insecure || this.options.origin.protocol === 'http:';
    if (realm.protocol !== 'https:' && !(httpOk && realm.protocol === 'http:')) {
      throw new AgentError('REGISTRY_PROTOCOL', `${this.options.origin.origin} announced a token realm that is not https (${realm.origin})`, {
        details: { realm: realm.origin },
      });
    }
    return realm;
  }

  async #exchange(challenge: Challenge, scopes: readonly string[], signal?: AbortSignal): Promise<Token> {
    const realm = this.#realm(challenge);
    const creds = this.options.credentials;
    const service = challenge.params['service'];
    if (creds?.type === 'identity-token') {
      const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.token, client_id: CLIENT_ID });
      if (service) body.set('service', service);
      if (scopes.length) body.set('scope', scopes.join(' '));
      const res = await this.options.sendTokenRequest({
        url: realm, method: 'POST', body: body.toString(), signal,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      if (res.statusCode !== 404) return this.#readToken(res, realm);
      await discard(res);
    }
    const url = new URL(realm);
    if (service) url.searchParams.set('service', service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    url.searchParams.set('client_id', CLIENT_ID);
    const headers: Record<string, string> = {};
    if (creds?.type === 'basic') {
      if (creds.username) url.searchParams.set('account', creds.username);
      headers['authorization'] = basicHeader(creds.username, creds.password);
    } else if (creds?.type === 'identity-token') {
      headers['authorization'] = basicHeader(creds.username ?? '<token>', creds.token);
    }
    const res = await this.options.sendTokenRequest({ url, headers, signal });
    return this.#readToken(res, realm);
  }

  async #readToken(res: HttpResponse, realm: URL): Promise<Token> {
    if (res.statusCode === 401 || res.statusCode === 403) {
      await discard(res);
      throw new AgentError('REGISTRY_AUTH_FAILED', `The token server ${realm.origin} refused the credentials (HTTP ${res.statusCode})`, {
        details: { realm: realm.origin, status: res.statusCode },
      });
    }
    if (res.statusCode !== 200) {
      await discard(res);
      const code = res.statusCode === 429 || res.statusCode >= 500 ? 'REGISTRY_UNAVAILABLE' : 'REGISTRY_AUTH_FAILED';
      throw new AgentError(code, `The token server ${realm.origin} answered HTTP ${res.statusCode}`, {
        details: { realm: realm.origin, status: res.statusCode },
      });
    }
    const body = await readBody(res, MAX_TOKEN_BODY, `token reply from ${realm.origin}`);
    let parsed: ReturnType<typeof TokenResponse.safeParse>;
    try {
      parsed = TokenResponse.safeParse(JSON.parse(body.toString('utf8')));
    } catch (err) {
      throw new AgentError('REGISTRY_PROTOCOL', `The token reply from ${realm.origin} is not JSON`, { cause: err });
    }
    const value = parsed.success ? parsed.data.token || parsed.data.access_token : undefined;
    if (!parsed.success || !value) {
      throw new AgentError('REGISTRY_PROTOCOL', `The token reply from ${realm.origin} has no token/access_token`);
    }
    return tokenLifetime(value, parsed.data.expires_in, parsed.data.issued_at, this.options.http.now());
  }
}

// Spec default and floor of 60 s; issued_at in the future or already expired (a ramdisk
// without NTP) falls back to local time; renew 10 % (at most 30 s) before expiry.
export function tokenLifetime(value: string, expiresIn: number | undefined, issuedAt: string | undefined, now: number): Token {
  const lifetimeMs = Math.max(MIN_TOKEN_LIFETIME_S, expiresIn ?? MIN_TOKEN_LIFETIME_S) * 1000;
  let start = issuedAt ? Date.parse(issuedAt) : Number.NaN;
  if (Number.isNaN(start) || start > now || start + lifetimeMs <= now) start = now;
  const expiresAt = start + lifetimeMs;
  return { value, expiresAt, renewAt: expiresAt - Math.min(30_000, lifetimeMs / 10) };
}

function cacheKey(challenge: Challenge, scopes: readonly string[]): string {
  return JSON.stringify([challenge.params['realm'], challenge.params['service'] ?? '', [...scopes].sort()]);
}

export function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}
