/**
 * The agent API as a pure function of a request (no sockets), so tests call it in memory.
 * Routes exist with and without the `/v1` prefix and with and without a trailing slash.
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { CommandExecutor } from '../commands/index.ts';
import { errorResponse, type ApiResponse } from './http-errors.ts';
import { checkJsonShape } from './json-shape.ts';
import { apiLimits, MAX_JSON_DEPTH, type ApiLimits } from './limits.ts';
import { parseTarget } from './target.ts';

export interface ApiRequest {
  method: string;
  /** Path and query, e.g. `/v1/commands/?wait=true&agent_token=…`. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The body, when it is already at hand (tests). */
  body?: Buffer;
  /** Reads the body from the socket: called only by a route that takes one, after the token. */
  readBody?: () => Promise<Buffer>;
  /** Aborted when the client goes away (ends `?wait=true` waits). */
  signal?: AbortSignal;
  /** Whether the request came over TLS (for links in version documents). */
  secure?: boolean;
}

export interface RouterDeps {
  executor: CommandExecutor;
  log: Logger;
  agentVersion: string;
  startedAt: number;
  /** The current agent token; undefined until known. */
  getToken(): string | undefined;
  getInventory(signal: AbortSignal): Promise<unknown>;
  /** `api_max_json_entries` (the agent passes its Config); default DEFAULT_API_LIMITS. */
  limits?: Partial<Pick<ApiLimits, 'api_max_json_entries'>>;
}

export type Router = (request: ApiRequest) => Promise<ApiResponse>;

const MEDIA_TYPE = 'application/vnd.openstack.ironic-python-agent.v1+json';

const RunCommandBody = z.object({
  name: z.string({ error: 'name must be a string' }),
  params: z.record(z.string(), z.unknown(), { error: 'params must be an object' }),
}).strict();

const WaitQuery = z.enum(['true', 'false', 'True', 'False', '1', '0']).optional();

// Comparing digests keeps the comparison constant-time whatever the token lengths are.
export function tokensEqual(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

export function createRouter(deps: RouterDeps): Router {
  const log = deps.log.child({ component: 'api' });
  const maxJsonEntries = apiLimits(deps.limits).api_max_json_entries;

  const requireToken = (query: URLSearchParams) => {
    const expected = deps.getToken();
    const given = query.get('agent_token');
    if (!expected || given === null || !tokensEqual(expected, given)) {
      throw new AgentError('UNAUTHORIZED', 'Token invalid');
    }
  };

  const parseWait = (query: URLSearchParams): boolean => {
    const parsed = WaitQuery.safeParse(query.get('wait') ?? undefined);
    if (!parsed.success) throw new AgentError('INVALID_REQUEST', `Invalid value for wait: ${query.get('wait')}; expected true or false`);
    return parsed.data === 'true' || parsed.data === 'True' || parsed.data === '1';
  };

  const parseBody = async (request: ApiRequest): Promise<unknown> => {
    const type = String(request.headers['content-type'] ?? 'application/json');
    if (!/^application\/(.+\+)?json\b/i.test(type)) {
      throw new AgentError('UNSUPPORTED_MEDIA_TYPE', `Unsupported Content-Type ${type.slice(0, 100)}; send application/json`);
    }
    const body = request.body ?? await request.readBody?.();
    if (!body || body.length === 0) throw new AgentError('INVALID_REQUEST', 'Missing request body: expected {"name": ..., "params": {...}}');
    checkJsonShape(body, maxJsonEntries, MAX_JSON_DEPTH);
    try {
      return JSON.parse(body.toString('utf8')) as unknown;
    } catch (err) {
      throw new AgentError('INVALID_REQUEST', `Request body is not valid JSON: ${(err as Error).message}`);
    }
  };

  const versionLinks = (base: string) => [{ href: `${base}/v1/`, rel: 'self' }];

  const route = async (request: ApiRequest, path: string, query: URLSearchParams, base: string): Promise<ApiResponse> => {
    const method = request.method.toUpperCase();
    const allow = (methods: string[]) => {
      if (!methods.includes(method)) throw new AgentError('METHOD_NOT_ALLOWED', `Method ${method} not allowed on ${path}`, { details: { allow: methods } });
    };
    if (path === '/') {
      allow(['GET']);
      const v1 = { id: 'v1', links: versionLinks(base) };
      return { status: 200, body: { name: 'OpenStack Ironic Python Agent API', description: 'bootc-agent, an Ironic Python Agent compatible API', versions: [v1], default_version: v1 } };
    }
    const rest = path.startsWith('/v1/') || path === '/v1' ? path.slice(3) || '/' : path;
    const parts = rest.split('/').filter(Boolean);
    if (parts.length === 0) {
      allow(['GET']);
      return { status: 200, body: { id: 'v1', links: versionLinks(base), media_types: [{ base: 'application/json', type: MEDIA_TYPE }] } };
    }
    const [head, id, extra] = parts;
    if (head === 'status' && parts.length === 1) {
      allow(['GET']);
      return { status: 200, body: { started_at: deps.startedAt, version: deps.agentVersion } };
    }
    if (head === 'inventory' && parts.length === 1) {
      allow(['GET']);
      requireToken(query);
      return { status: 200, body: { inventory: await deps.getInventory(request.signal ?? new AbortController().signal) } };
    }
    if (head === 'commands' && extra === undefined) {
      if (id === undefined) {
        allow(['GET', 'POST']);
        requireToken(query);
        if (method === 'GET') return { status: 200, body: { commands: deps.executor.list() } };
        const wait = parseWait(query);
        const parsed = RunCommandBody.safeParse(await parseBody(request));
        if (!parsed.success) {
          throw new AgentError('INVALID_REQUEST', `Invalid command request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
        }
        const started = deps.executor.execute(parsed.data.name, parsed.data.params);
        const result = started.sync || wait ? await deps.executor.wait(started.result.id, request.signal) : started.result;
        return { status: 200, body: result };
      }
      allow(['GET']);
      requireToken(query);
      const wait = parseWait(query);
      return { status: 200, body: wait ? await deps.executor.wait(id, request.signal) : deps.executor.get(id) };
    }
    throw new AgentError('NOT_FOUND', `The resource could not be found: ${path}`);
  };

  return async (request) => {
    try {
      const { path, query } = parseTarget(request.url);
      const host = String(request.headers.host ?? 'localhost');
      const base = `${request.secure ? 'https' : 'http'}://${host}`;
      return await route(request, path, query, base);
    } catch (err) {
      return errorResponse(err, log);
    }
  };
}
