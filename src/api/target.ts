/**
 * The request target (`/v1/commands/?agent_token=…`) as a path and a query. A target that is
 * not an origin-form path, nor an http(s) URL, is refused without being echoed anywhere: it
 * holds the token, and a malformed one may hold credentials (`//user:pass@`).
 * @module
 */
import { AgentError } from '../errors.ts';

export interface RequestTarget {
  /** Normalized path (dot segments resolved), percent-encoding kept. */
  path: string;
  query: URLSearchParams;
}

// RFC 3986 path characters (pchar and '/'), percent-escapes checked separately. A leading '//'
// reads as an authority to every URL parser, so it is refused rather than guessed at.
const PATH = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;
const ABSOLUTE = /^https?:\/\//i;
// Only for resolving a checked path: never seen by anyone.
const BASE = 'http://agent.invalid';

function malformed(): AgentError {
  return new AgentError('MALFORMED_HTTP_REQUEST', 'Malformed request target: expected /path[?query] or an http(s) URL');
}

function originForm(path: string, rawQuery: string): RequestTarget {
  if (!PATH.test(path) || BAD_ESCAPE.test(path)) throw malformed();
  return { path: new URL(path, BASE).pathname, query: new URLSearchParams(rawQuery) };
}

/** Splits and checks a request target; throws MALFORMED_HTTP_REQUEST (400) without quoting it. */
export function parseTarget(target: string): RequestTarget {
  if (ABSOLUTE.test(target)) {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw malformed();
    }
    if (url.username || url.password) throw malformed();
    return originForm(url.pathname, url.search.slice(1));
  }
  const question = target.indexOf('?');
  const path = question < 0 ? target : target.slice(0, question);
  const query = question < 0 ? '' : target.slice(question + 1).split('#', 1)[0]!;
  return originForm(path, query);
}

/** The path for the request log: never the query (it holds the token), never a malformed target. */
export function loggablePath(target: string): string {
  try {
    const { path } = parseTarget(target);
    return path.length > 256 ? `${path.slice(0, 256)}…` : path;
  } catch {
    return '[malformed target]';
  }
}
