/**
 * What a client may make the agent API hold and do: connections, requests in flight, deadlines
 * and the size of a JSON body's structure. The keys are the configuration keys
 * (docs/configuration.md), so the agent passes its frozen Config as it is; the defaults are the
 * options' defaults.
 * @module
 */

export interface ApiLimits {
  /** Connections open at once, TLS handshakes included. */
  api_max_connections: number;
  /** Connections open at once from one client address. */
  api_max_connections_per_address: number;
  /** Requests being answered at once, waiting ones included. */
  api_max_requests: number;
  /** Seconds for the TLS handshake, and for each request's line and headers. */
  api_header_timeout: number;
  /** Seconds for a whole request, body included. */
  api_body_timeout: number;
  /** Object members and array items in a JSON request body. */
  api_max_json_entries: number;
}

export const DEFAULT_API_LIMITS: Readonly<ApiLimits> = Object.freeze({
  api_max_connections: 64,
  api_max_connections_per_address: 16,
  api_max_requests: 32,
  api_header_timeout: 10,
  api_body_timeout: 120,
  api_max_json_entries: 10_000,
});

/** Nesting of a JSON request body: IPA's node and step documents need a handful of levels. */
export const MAX_JSON_DEPTH = 64;

/** Request line and headers together (Node's default, stated here because the docs name it). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** The limits in `given` (any object with those keys, such as the agent's Config), defaults for the rest. */
export function apiLimits(given: Partial<ApiLimits> = {}): ApiLimits {
  const pick = <K extends keyof ApiLimits>(key: K): ApiLimits[K] => given[key] ?? DEFAULT_API_LIMITS[key];
  return {
    api_max_connections: pick('api_max_connections'),
    api_max_connections_per_address: pick('api_max_connections_per_address'),
    api_max_requests: pick('api_max_requests'),
    api_header_timeout: pick('api_header_timeout'),
    api_body_timeout: Math.max(pick('api_body_timeout'), pick('api_header_timeout')),
    api_max_json_entries: pick('api_max_json_entries'),
  };
}
