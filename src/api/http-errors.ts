/**
 * The only place that turns errors into HTTP replies. Every reply ≥ 400 is JSON with a string
 * `faultstring` and `faultcode`: the conductor reads `faultstring` unguarded (ipa-protocol.md §2.5).
 * @module
 */
import { ERROR_CODES, isAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';

export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

// IPA's faultstrings for these two are matched by people and scripts; keep them exact.
const FAULTSTRINGS: Partial<Record<keyof typeof ERROR_CODES, (message: string) => string>> = {
  UNAUTHORIZED: () => '401 Unauthorized: Token invalid.',
};

export function errorResponse(err: unknown, log: Logger): ApiResponse {
  if (isAgentError(err)) {
    const status = err.status;
    const faultstring = FAULTSTRINGS[err.code]?.(err.message) ?? err.message;
    if (status >= 500) log.error({ err, details: err.details }, 'request failed');
    else log.info({ code: err.code, status }, faultstring);
    return {
      status,
      body: { faultcode: status >= 500 ? 'Server' : 'Client', faultstring, debuginfo: null, error_code: err.code },
    };
  }
  // Unknown errors: log everything, leak nothing.
  log.error({ err }, 'unexpected error while handling request');
  return { status: 500, body: { faultcode: 'Server', faultstring: 'Internal Server Error', debuginfo: null, error_code: 'INTERNAL' } };
}
