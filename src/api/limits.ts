/**
 * What a client may make the agent API hold and do: connections, requests in flight, deadlines
 * and the size of a JSON body's structure. The keys are the configuration keys
 * (docs/configuration.md), so the agent passes its frozen Config as it is; the defaults are the
 * options' defaults.
 * @module
 */
import { OPTIONS, type Config, type OptionDef } from '../config/index.ts';

const KEYS = [
  'api_max_connections', 'api_max_connections_per_address', 'api_max_requests',
  'api_header_timeout', 'api_body_timeout', 'api_max_json_entries',
] as const;

/** The limits, as the configuration declares them (src/config/options.ts says what each bounds). */
export type ApiLimits = Pick<Config, (typeof KEYS)[number]>;

/** The options' own defaults. */
export const DEFAULT_API_LIMITS: Readonly<ApiLimits> = Object.freeze(Object.fromEntries(
  KEYS.map((key) => [key, (OPTIONS as readonly OptionDef[]).find((o) => o.key === key)!.default]),
) as unknown as ApiLimits);

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
