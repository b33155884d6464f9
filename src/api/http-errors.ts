/**
 * The only place that turns errors into HTTP replies. Every reply ≥ 400 is JSON with a string
 * `faultstring` and `faultcode`: the conductor reads `faultstring` unguarded (ipa-protocol.md §2.5).
 * @module
 */
import { STATUS_CODES } from 'node:http';
import { AgentError, ERROR_CODES, isAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { MAX_HEADER_BYTES } from './limits.ts';

export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

// IPA's faultstrings for these two are matched by people and scripts; keep them exact.
const FAULTSTRINGS: Partial<Record<keyof typeof ERROR_CODES, (message: string) => string>> = {
  UNAUTHORIZED: () => '401 Unauthorized: Token invalid.',
};

/** The JSON body of a fault reply, without logging it. */
export function faultBody(err: AgentError): { faultcode: 'Server' | 'Client'; faultstring: string; debuginfo: null; error_code: string } {
  const faultstring = FAULTSTRINGS[err.code]?.(err.message) ?? err.message;
  return { faultcode: err.status >= 500 ? 'Server' : 'Client', faultstring, debuginfo: null, error_code: err.code };
}

export function errorResponse(err: unknown, log: Logger): ApiResponse {
  if (isAgentError(err)) {
    const body = faultBody(err);
    if (err.status >= 500) log.error({ err, details: err.details }, 'request failed');
    else log.info({ code: err.code, status: err.status }, body.faultstring);
    return { status: err.status, body };
  }
  // Unknown errors: log everything, leak nothing.
  log.error({ err }, 'unexpected error while handling request');
  return { status: 500, body: { faultcode: 'Server', faultstring: 'Internal Server Error', debuginfo: null, error_code: 'INTERNAL' } };
}

/**
 * What to answer a request Node's HTTP parser refused or timed out (`clientError`), by the
 * error's code; undefined when nothing can be answered (the peer reset the connection).
 */
export function parserRejection(code: string | undefined, deadlines: { headerSeconds: number; bodySeconds: number }): AgentError | undefined {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new AgentError('REQUEST_TIMEOUT', `Request timeout: the request line and headers must arrive within ${deadlines.headerSeconds} s, the whole request within ${deadlines.bodySeconds} s`);
    case 'HPE_HEADER_OVERFLOW':
      return new AgentError('REQUEST_HEADERS_TOO_LARGE', `Request line and headers exceed ${MAX_HEADER_BYTES} bytes`);
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new AgentError('PAYLOAD_TOO_LARGE', 'Chunk extensions of the request body are too large');
    default:
      // Only the parser's own code is quoted: its message may carry request bytes.
      return code?.startsWith('HPE_') ? new AgentError('MALFORMED_HTTP_REQUEST', `Malformed HTTP request (${/^HPE_[A-Z_]+$/.test(code) ? code : 'parse error'})`) : undefined;
  }
}

/** A fault reply as the bytes written straight to a socket that has no ServerResponse; it closes the connection. */
export function rawFaultReply(err: AgentError): string {
  const body = JSON.stringify(faultBody(err));
  return `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}
