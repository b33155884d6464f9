/**
 * The agent's HTTP API (IPA wire protocol): a pure router and the socket around it.
 * @example
 * const router = createRouter({ executor, log, agentVersion, startedAt, getToken, getInventory, limits: config });
 * const server = await startApiServer({ router, log, host: '::', port: 9999, maxBodyBytes, limits: config, tls });
 * @module
 */
export { createRouter, tokensEqual } from './router.ts';
export { startApiServer } from './server.ts';
export { errorResponse } from './http-errors.ts';
export { apiLimits, DEFAULT_API_LIMITS, MAX_HEADER_BYTES, MAX_JSON_DEPTH } from './limits.ts';
export type { ApiRequest, Router, RouterDeps } from './router.ts';
export type { ApiServer, ServerOptions } from './server.ts';
export type { ApiResponse } from './http-errors.ts';
export type { ApiLimits } from './limits.ts';
