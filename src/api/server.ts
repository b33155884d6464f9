/**
 * The listening socket: node:https (default, self-signed certificate) or node:http, and JSON
 * replies from the pure router. What a client may make it hold is bounded (limits.ts,
 * docs/api.md "Limits"): connections, requests in flight, time for headers and for bodies, body
 * size; a body is read only once the route has checked the token.
 * @module
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions as HttpServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { AgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { declaredLength, discardRestOfBody, readBody, tooLarge } from './body.ts';
import { trackConnections, type ConnectionTracker } from './connections.ts';
import { errorResponse, faultBody, parserRejection, rawFaultReply, type ApiResponse } from './http-errors.ts';
import { apiLimits, MAX_HEADER_BYTES, type ApiLimits } from './limits.ts';
import type { Router } from './router.ts';
import { loggablePath } from './target.ts';

export interface ServerOptions {
  router: Router;
  log: Logger;
  host: string;
  port: number;
  maxBodyBytes: number;
  /** The API's limits (the agent passes its Config); DEFAULT_API_LIMITS for those not given. */
  limits?: Partial<ApiLimits>;
  /** PEM certificate and key: serve HTTPS. Absent: plain HTTP. */
  tls?: { certPem: string; keyPem: string; minVersion: 'TLSv1.2' | 'TLSv1.3' };
}

export interface ApiServer {
  /** The bound address (port resolved when 0 was asked). */
  address: AddressInfo;
  secure: boolean;
  close(): Promise<void>;
}

// Idle keep-alive connections close after this; the conductor reconnects as it needs.
const KEEP_ALIVE_MS = 65_000;
// Connections the kernel queues until the agent accepts them (capped by net.core.somaxconn):
// Node's 511 overflows under a reconnecting flood, and a connection whose SYN is dropped then
// waits for the client's retransmission, a second or more.
const LISTEN_BACKLOG = 4096;
// A client refused before its body was read may go on sending this long (or api_header_timeout,
// if shorter) while it is thrown away, so that it gets to read the reply.
const MAX_DISCARD_MS = 2000;

function send(res: ServerResponse, response: ApiResponse): void {
  const body = JSON.stringify(response.body ?? null);
  res.writeHead(response.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...response.headers,
  });
  res.end(body);
}

// Node's own deadlines: headersTimeout for the request line and headers, requestTimeout for the
// whole request (it ends when the request has arrived: a `?wait=true` reply may take as long as
// its command). They are checked every connectionsCheckingInterval, so that follows them.
function nodeServerOptions(limits: ApiLimits): HttpServerOptions {
  const headersMs = Math.round(limits.api_header_timeout * 1000);
  const requestMs = Math.round(limits.api_body_timeout * 1000);
  return {
    headersTimeout: headersMs,
    requestTimeout: requestMs,
    keepAliveTimeout: KEEP_ALIVE_MS,
    connectionsCheckingInterval: Math.max(20, Math.min(1000, Math.round(headersMs / 4))),
    maxHeaderSize: MAX_HEADER_BYTES,
  };
}

interface HandlerContext {
  options: ServerOptions;
  limits: ApiLimits;
  connections: ConnectionTracker;
  /** The reply in progress on each socket, so a parser error does not write over it. */
  replying: WeakMap<Duplex, ServerResponse>;
  /** How long the rest of a body that came too late for its reply is read and thrown away. */
  discardMs: number;
  secure: boolean;
  log: Logger;
}

async function respond(ctx: HandlerContext, req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<ApiResponse> {
  if (ctx.connections.inFlight > ctx.limits.api_max_requests) {
    const err = new AgentError('API_OVERLOADED', `More than ${ctx.limits.api_max_requests} requests in flight; retry shortly`);
    ctx.log.debug({ code: err.code }, err.message);
    return { status: err.status, body: faultBody(err), headers: { 'retry-after': '1' } };
  }
  const declared = declaredLength(req);
  if (declared > ctx.options.maxBodyBytes) return errorResponse(tooLarge(ctx.options.maxBodyBytes, declared), ctx.log);
  return ctx.options.router({
    method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, signal, secure: ctx.secure,
    readBody: () => readBody(req, res, ctx.options.maxBodyBytes),
  });
}

function createHandler(ctx: HandlerContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const started = performance.now();
    const end = ctx.connections.begin(req.socket);
    const abort = new AbortController();
    ctx.replying.set(req.socket, res);
    res.once('close', () => {
      end();
      if (ctx.replying.get(req.socket) === res) ctx.replying.delete(req.socket);
      if (!res.writableFinished) abort.abort(new Error('client went away'));
    });
    void (async () => {
      let response: ApiResponse;
      try {
        response = await respond(ctx, req, res, abort.signal);
      } catch (err) {
        response = errorResponse(err, ctx.log);
      }
      discardRestOfBody(req, res, ctx.discardMs);
      if (!res.headersSent && !res.destroyed && !req.socket.destroyed) send(res, response);
      // The query string carries agent_token: log the path only.
      ctx.log.debug({ method: req.method, path: loggablePath(req.url ?? ''), status: response.status, ms: Math.round(performance.now() - started) }, 'request');
    })();
  };
}

// A request Node's parser refused or timed out: a JSON fault where a reply can still be sent.
// The error is not logged as it is: its rawPacket holds the request's bytes, token included.
function onClientError(ctx: HandlerContext, err: NodeJS.ErrnoException, socket: Duplex): void {
  const fault = parserRejection(err.code, { headerSeconds: ctx.limits.api_header_timeout, bodySeconds: ctx.limits.api_body_timeout });
  if (fault && socket.writable && !ctx.replying.get(socket)?.headersSent) socket.write(rawFaultReply(fault));
  socket.destroy();
  ctx.log.debug({ code: err.code ?? 'unknown' }, 'malformed or late request refused');
}

function listen(server: Server, options: ServerOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      // `::` on a host without IPv6 falls back to all IPv4 addresses, as IPA does.
      if (options.host === '::' && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL')) {
        server.listen({ port: options.port, host: '0.0.0.0', backlog: LISTEN_BACKLOG }, resolve);
        return;
      }
      reject(new AgentError('API_LISTEN_FAILED', `Cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ port: options.port, host: options.host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export async function startApiServer(options: ServerOptions): Promise<ApiServer> {
  const log = options.log.child({ component: 'api' });
  const limits = apiLimits(options.limits);
  const secure = options.tls !== undefined;
  const serverOptions = nodeServerOptions(limits);
  const server: Server = options.tls
    ? createHttpsServer({
      ...serverOptions, cert: options.tls.certPem, key: options.tls.keyPem, minVersion: options.tls.minVersion, maxVersion: 'TLSv1.3',
      handshakeTimeout: serverOptions.headersTimeout!,
    })
    : createHttpServer(serverOptions);
  const connections = trackConnections(server, { max: limits.api_max_connections, perAddress: limits.api_max_connections_per_address }, log);
  const discardMs = Math.min(MAX_DISCARD_MS, serverOptions.headersTimeout!);
  const ctx: HandlerContext = { options, limits, connections, replying: new WeakMap(), discardMs, secure, log };
  const handler = createHandler(ctx);
  server.on('request', handler);
  // Registered, so Node leaves `100 Continue` to readBody: sent only once the token was checked.
  server.on('checkContinue', handler);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => onClientError(ctx, err, socket));

  await listen(server, options);
  const address = server.address() as AddressInfo;
  log.info({ host: address.address, port: address.port, tls: secure }, 'agent API listening');
  return {
    address,
    secure,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      connections.closeAll();
    }),
  };
}
