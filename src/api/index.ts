/**
 * The agent's HTTP API (IPA wire protocol): a pure router and the socket around it.
 * @example
 * const router = createRouter({ executor, log, agentVersion, startedAt, getToken, getInventory });
 * const server = await startApiServer({ router, log, host: '::', port: 9999, maxBodyBytes, tls });
 * @module
 */
export { createRouter, tokensEqual } from './router.ts';
export { startApiServer } from './server.ts';
export { errorResponse } from './http-errors.ts';
export type { ApiRequest, Router, RouterDeps } from './router.ts';
export type { ApiServer, ServerOptions } from './server.ts';
export type { ApiResponse } from './http-errors.ts';
