/**
 * The Ironic API as the ramdisk uses it (ipa-protocol.md §3): version discovery, lookup with
 * back-off and the token rules, and heartbeats.
 * @module
 */
import type { Dispatcher } from 'undici';
import type { Config } from '../config/index.ts';
import { AgentError, isAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { lookupDelayMs, nextLockPauseMs } from './backoff.ts';
import { systemClock, systemSleep, throwIfAborted, type Sleep } from './clock.ts';
import { errorMessageOf, LookupReply, VersionsDocument, type LookupConfig, type LookupNode } from './schemas.ts';
import { resolveAgentToken, type TokenSource } from './token.ts';
import { createTransport, isUnreachable, type TransportConfig, type TransportResponse } from './transport.ts';
import { negotiateVersions, parseMicroversion, type NegotiatedVersions } from './versions.ts';

export type IronicClientConfig = TransportConfig & Pick<Config, 'ironic_api_version' | 'lookup_timeout' | 'lookup_interval'>;

export interface IronicClientOptions {
  config: IronicClientConfig;
  log: Logger;
  /** Sent as `agent_version` and in the User-Agent. */
  agentVersion: string;
  dispatcher?: Dispatcher;
  clock?: { now(): number };
  /** Uniform [0, 1) (jitter). */
  random?: () => number;
  sleep?: Sleep;
}

export interface LookupInput {
  /** MAC addresses of every interface that has one. */
  macs: readonly string[];
  nodeUuid?: string | undefined;
  /** Token already on hand (state store first, then `agent_token` from the config). */
  knownToken?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface LookupResult {
  node: LookupNode;
  config: LookupConfig;
  /** The token to use from now on (undefined only when the conductor does not require one). */
  token: string | undefined;
  tokenSource: TokenSource;
  /** The API URL that answered. */
  apiUrl: string;
}

export type AgentStatus = 'start' | 'end' | 'error';

export interface HeartbeatInput {
  nodeUuid: string;
  callbackUrl: string;
  token: string | undefined;
  /** Defaults to the client's agentVersion. */
  agentVersion?: string;
  /** PEM sent as `agent_verify_ca` (API ≥ 1.68 only). */
  verifyCaPem?: string | undefined;
  /** Sent only when the API is ≥ 1.72 (then with version header 1.72). */
  status?: AgentStatus | undefined;
  statusMessage?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface IronicClient {
  /** The API URL used first (the last one that answered). */
  readonly apiUrl: string;
  /** The negotiated versions, once discovered. */
  readonly versions: NegotiatedVersions | undefined;
  discoverApiVersion(options?: { signal?: AbortSignal }): Promise<NegotiatedVersions>;
  lookup(input: LookupInput): Promise<LookupResult>;
  heartbeat(input: HeartbeatInput): Promise<void>;
  close(): Promise<void>;
}

// A failed lookup attempt: retried unless `fatal`.
interface LookupFailure { reason: string; status?: number; fatal?: boolean }

const RETRIED_STATUSES = (status: number) => status === 404 || status === 409 || status >= 500;

function parseJson(res: TransportResponse): unknown {
  try {
    return JSON.parse(res.text);
  } catch (err) {
    throw new AgentError('CONDUCTOR_PROTOCOL', `The Ironic API at ${res.apiUrl} answered HTTP ${res.status} with a body that is not JSON`, { cause: err });
  }
}

export function createIronicClient(options: IronicClientOptions): IronicClient {
  const { config } = options;
  const log = options.log.child({ component: 'conductor' });
  const transport = createTransport({ config, log: options.log, agentVersion: options.agentVersion, ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}) });
  const now = () => (options.clock ?? systemClock).now();
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? systemSleep;
  let versions: NegotiatedVersions | undefined;

  async function discoverApiVersion(opts: { signal?: AbortSignal } = {}): Promise<NegotiatedVersions> {
    if (versions) return versions;
    if (config.ironic_api_version) {
      const pinned = parseMicroversion(config.ironic_api_version);
      if (pinned) {
        versions = negotiateVersions(pinned, true);
        log.info({ versions }, 'using the pinned Ironic API version');
        return versions;
      }
      log.warn({ ironic_api_version: config.ironic_api_version }, 'ironic_api_version is not MAJOR.MINOR; discovering the version instead');
    }
    const res = await transport.send({ method: 'GET', path: '/', signal: opts.signal });
    if (res.status !== 200) {
      throw new AgentError('CONDUCTOR_PROTOCOL', `GET ${res.apiUrl}/ answered HTTP ${res.status}: ${errorMessageOf(res.text) ?? 'no message'}`, { details: { status: res.status } });
    }
    const doc = VersionsDocument.safeParse(parseJson(res));
    const text = doc.success ? (doc.data.default_version?.version ?? doc.data.versions?.find((v) => v.id === 'v1')?.version) : undefined;
    const server = text ? parseMicroversion(text) : undefined;
    if (!server) {
      throw new AgentError('CONDUCTOR_PROTOCOL', `GET ${res.apiUrl}/ did not announce a default_version.version`, { details: { version: text ?? null } });
    }
    versions = negotiateVersions(server);
    log.info({ versions }, 'negotiated the Ironic API version');
    return versions;
  }

  // One lookup request; returns the reply or a failure to retry (or not).
  async function lookupOnce(input: LookupInput): Promise<{ reply: LookupReply; apiUrl: string } | LookupFailure> {
    let negotiated: NegotiatedVersions;
    let res: TransportResponse;
    try {
      negotiated = await discoverApiVersion(input.signal ? { signal: input.signal } : {});
      res = await transport.send({
        method: 'GET',
        path: '/v1/lookup',
        query: { addresses: input.macs.join(','), node_uuid: input.nodeUuid },
        headers: { 'x-openstack-ironic-api-version': negotiated.lookup },
        signal: input.signal,
      });
    } catch (err) {
      if (isAgentError(err) && (err.code === 'CONDUCTOR_PROTOCOL' || isUnreachable(err))) return { reason: err.message };
      throw err;
    }
    if (res.status !== 200) {
      const reason = `HTTP ${res.status}: ${errorMessageOf(res.text) ?? 'no message'}`;
      return { reason, status: res.status, fatal: !RETRIED_STATUSES(res.status) };
    }
    let body: unknown;
    try {
      body = parseJson(res);
    } catch (err) {
      return { reason: (err as Error).message };
    }
    const parsed = LookupReply.safeParse(body);
    if (!parsed.success) return { reason: `unusable lookup reply: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
    return { reply: parsed.data, apiUrl: res.apiUrl };
  }

  async function lookup(input: LookupInput): Promise<LookupResult> {
    if (input.macs.length === 0 && !input.nodeUuid) {
      throw new AgentError('LOOKUP_FAILED', 'Lookup needs at least one MAC address or a node UUID');
    }
    const started = now();
    const deadline = started + config.lookup_timeout * 1000;
    let lockPause = 0;
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(input.signal);
      const outcome = await lookupOnce(input);
      if ('reply' in outcome) {
        const { node, config: lookupConfig } = outcome.reply;
        const negotiated = versions!;
        const resolved = resolveAgentToken({
          received: lookupConfig.agent_token,
          required: lookupConfig.agent_token_required ?? negotiated.supportsToken,
          known: input.knownToken,
        });
        if (resolved.warning) log.warn({ tokenSource: resolved.source }, resolved.warning);
        log.info({ nodeUuid: node.uuid, attempts: attempt, tokenSource: resolved.source, heartbeatTimeout: lookupConfig.heartbeat_timeout }, 'lookup succeeded');
        return { node, config: lookupConfig, token: resolved.token, tokenSource: resolved.source, apiUrl: outcome.apiUrl };
      }
      const details = { attempts: attempt, status: outcome.status ?? null, last_error: outcome.reason, macs: [...input.macs] };
      if (outcome.fatal) {
        throw new AgentError('LOOKUP_FAILED', `Lookup was refused by the Ironic API (${outcome.reason})`, { details });
      }
      const remaining = deadline - now();
      if (remaining <= 0) {
        throw new AgentError('LOOKUP_FAILED', `The node could not be looked up within ${config.lookup_timeout} s (${attempt} attempts; last: ${outcome.reason})`, { details });
      }
      let delay = lookupDelayMs(attempt, config.lookup_interval * 1000, random);
      if (outcome.status === 409) {
        lockPause = nextLockPauseMs(lockPause);
        delay = Math.max(delay, lockPause);
      }
      delay = Math.min(delay, remaining);
      log.warn({ attempt, status: outcome.status, reason: outcome.reason, retryInMs: Math.round(delay) }, 'lookup failed, retrying');
      await sleep(delay, input.signal);
    }
  }

  async function heartbeat(input: HeartbeatInput): Promise<void> {
    let negotiated: NegotiatedVersions;
    let res: TransportResponse;
    const body: Record<string, string> = { callback_url: input.callbackUrl };
    try {
      negotiated = await discoverApiVersion(input.signal ? { signal: input.signal } : {});
      if (negotiated.supportsToken && input.token) body.agent_token = input.token;
      if (negotiated.supportsAgentVersion) body.agent_version = input.agentVersion ?? options.agentVersion;
      if (negotiated.supportsVerifyCa && input.verifyCaPem) body.agent_verify_ca = input.verifyCaPem;
      const withStatus = negotiated.supportsStatus && (input.status !== undefined || input.statusMessage !== undefined);
      if (withStatus) {
        if (input.status !== undefined) body.agent_status = input.status;
        if (input.statusMessage !== undefined) body.agent_status_message = input.statusMessage;
      }
      const version = withStatus ? negotiated.heartbeatWithStatus! : negotiated.heartbeat;
      res = await transport.send({
        method: 'POST',
        path: `/v1/heartbeat/${encodeURIComponent(input.nodeUuid)}`,
        headers: { 'x-openstack-ironic-api-version': version },
        body,
        signal: input.signal,
      });
    } catch (err) {
      if (isAgentError(err) && err.code === 'CANCELLED') throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new AgentError('HEARTBEAT_FAILED', `Heartbeat failed: ${message}`, { cause: err, details: { reason: isUnreachable(err) ? 'unreachable' : 'protocol' } });
    }
    if (res.status !== 202) {
      const error = errorMessageOf(res.text) ?? 'no message';
      throw new AgentError('HEARTBEAT_FAILED', `Heartbeat to ${res.apiUrl} was answered with HTTP ${res.status}: ${error}`, {
        details: { status: res.status, error, conflict: res.status === 409 },
      });
    }
    log.debug({ callbackUrl: input.callbackUrl, fields: Object.keys(body) }, 'heartbeat accepted');
  }

  return {
    get apiUrl() {
      return transport.apiUrl;
    },
    get versions() {
      return versions;
    },
    discoverApiVersion,
    lookup,
    heartbeat,
    close: () => transport.close(),
  };
}
