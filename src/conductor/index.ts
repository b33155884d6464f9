/**
 * Talking to the Ironic conductor from the ramdisk: API version discovery, node lookup with the
 * agent-token rules, heartbeats and the address advertised in the callback URL.
 * @example
 * const client = createIronicClient({ config, log, agentVersion: '0.1.0' });
 * const versions = await client.discoverApiVersion();
 * const found = await client.lookup({ macs: ['52:54:00:12:34:56'], knownToken, signal });
 * await client.heartbeat({ nodeUuid: found.node.uuid, callbackUrl, token: found.token, verifyCaPem: certPem });
 * @example
 * const host = await findAdvertiseAddress({ config, runner, log });
 * const callbackUrl = buildCallbackUrl('https', host, 9999); // https://[2001:db8::10]:9999 for IPv6
 * @example
 * const heartbeater = createHeartbeater({ client, log, getState: () => ({ nodeUuid, callbackUrl, token, verifyCaPem, heartbeatTimeout }) });
 * heartbeater.start(shutdownSignal);
 * heartbeater.force(); // a command finished
 * @module
 */
export { createIronicClient } from './client.ts';
export type { AgentStatus, HeartbeatInput, IronicClient, IronicClientConfig, IronicClientOptions, LookupInput, LookupResult } from './client.ts';
export { createHeartbeater } from './heartbeater.ts';
export type { Heartbeater, HeartbeaterOptions, HeartbeaterStats, HeartbeatState } from './heartbeater.ts';
export { buildCallbackUrl, findAdvertiseAddress, isLinkLocal, parseRouteSource } from './advertise.ts';
export type { AdvertiseConfig, AdvertiseOptions } from './advertise.ts';
export { negotiateVersions, parseMicroversion, compareMicroversions, formatMicroversion } from './versions.ts';
export type { Microversion, NegotiatedVersions } from './versions.ts';
export { resolveAgentToken, MASKED_TOKEN, MIN_TOKEN_LENGTH } from './token.ts';
export type { ResolvedToken, TokenSource } from './token.ts';
export { lookupDelayMs } from './backoff.ts';
export { systemClock, systemSleep } from './clock.ts';
export type { Clock, Sleep } from './clock.ts';
export { errorMessageOf } from './schemas.ts';
export type { LookupConfig, LookupNode } from './schemas.ts';
export { createStatusMessages, progressMessage } from './status-message.ts';
export type { RunningCommand, StatusMessages } from './status-message.ts';
