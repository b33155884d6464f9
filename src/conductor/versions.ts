/**
 * Ironic API microversions: parsing, numeric comparison (1.9 < 1.62) and what this agent sends
 * on each call (ipa-protocol.md §3.2; thresholds from Ironic's webapi-version-history).
 * @module
 */

export type Microversion = readonly [major: number, minor: number];

/** 1.36: heartbeat accepts `agent_version`. */
export const AGENT_VERSION_MIN: Microversion = [1, 36];
/** 1.62: lookup issues the agent token; heartbeat carries `agent_token`. */
export const AGENT_TOKEN_MIN: Microversion = [1, 62];
/** 1.68: heartbeat accepts `agent_verify_ca` (auto TLS). */
export const VERIFY_CA_MIN: Microversion = [1, 68];
/** 1.72: heartbeat accepts `agent_status` and `agent_status_message`. */
export const AGENT_STATUS_MIN: Microversion = [1, 72];

export function parseMicroversion(text: string): Microversion | undefined {
  const m = /^\s*(\d+)\.(\d+)\s*$/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function formatMicroversion(v: Microversion): string {
  return `${v[0]}.${v[1]}`;
}

export function compareMicroversions(a: Microversion, b: Microversion): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

export function minMicroversion(a: Microversion, b: Microversion): Microversion {
  return compareMicroversions(a, b) <= 0 ? a : b;
}

const atLeast = (v: Microversion, min: Microversion) => compareMicroversions(v, min) >= 0;

export interface NegotiatedVersions {
  /** What the server announced (or what `ironic_api_version` pinned). */
  server: string;
  pinned: boolean;
  /** X-OpenStack-Ironic-API-Version for lookup: min(server, 1.62). */
  lookup: string;
  /** X-OpenStack-Ironic-API-Version for heartbeats: min(server, 1.68). */
  heartbeat: string;
  /** … or this one when the heartbeat carries agent_status fields (1.72, only when supported). */
  heartbeatWithStatus: string | undefined;
  supportsAgentVersion: boolean;
  supportsToken: boolean;
  supportsVerifyCa: boolean;
  supportsStatus: boolean;
}

// IPA sends the lowest version that has what it needs, never the server's newest, so newer
// microversions cannot change the behaviour it relies on.
export function negotiateVersions(server: Microversion, pinned = false): NegotiatedVersions {
  const supportsStatus = atLeast(server, AGENT_STATUS_MIN);
  return {
    server: formatMicroversion(server),
    pinned,
    lookup: formatMicroversion(minMicroversion(server, AGENT_TOKEN_MIN)),
    heartbeat: formatMicroversion(minMicroversion(server, VERIFY_CA_MIN)),
    heartbeatWithStatus: supportsStatus ? formatMicroversion(AGENT_STATUS_MIN) : undefined,
    supportsAgentVersion: atLeast(server, AGENT_VERSION_MIN),
    supportsToken: atLeast(server, AGENT_TOKEN_MIN),
    supportsVerifyCa: atLeast(server, VERIFY_CA_MIN),
    supportsStatus,
  };
}
