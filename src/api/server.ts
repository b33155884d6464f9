/**
 * The listening socket: node:https (default, self-signed certificate) or node:http, a request
 * body limit, and JSON replies from the pure router.
 * @module
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { AgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { errorResponse, type ApiResponse } from './http-errors.ts';
import type { Router } from './router.ts';

export interface ServerOptions {
  router: Router;
  log: Logger;
  host: string;
  port: number;
  maxBodyBytes: number;
  /** PEM certificate and key: serve HTTPS. Absent: plain HTTP. */
  tls?: { certPem: string; keyPem: string; minVersion: 'TLSv1.2' | 'TLSv1.3' };
}

export interface ApiServer {
  /** The bound address (port resolved when 0 was asked). */
  address: AddressInfo;
  secure: boolean;
  close(): Promise<void>;
}

// Reads the body, refusing more than `limit` bytes without buffering the excess.
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new AgentError('PAYLOAD_TOO_LARGE', `Request body of ${declared} bytes exceeds the limit of ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        reject(new AgentError('PAYLOAD_TOO_LARGE', `Request body exceeds the limit of ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, response: ApiResponse): void {
  const body = JSON.stringify(response.body ?? null);
  res.writeHead(response.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...response.headers,
  });
  res.end(body);
}

export async function startApiServer(options: ServerOptions): Promise<ApiServer> {
  const log = options.log.child({ component: 'api' });
  const secure = options.tls !== undefined;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const abort = new AbortController();
    res.on('close', () => { if (!res.writableFinished) abort.abort(new Error('client went away')); });
    void (async () => {
      let response: ApiResponse;
      try {
        const body = await readBody(req, options.maxBodyBytes);
        response = await options.router({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body, signal: abort.signal, secure });
      } catch (err) {
        response = errorResponse(err, log);
        res.setHeader('connection', 'close');
      }
      if (!res.destroyed) send(res, response);
      // The query string carries agent_token: log the path only.
      log.debug({ method: req.method, path: (req.url ?? '').split('?')[0], status: response.status, ms: Math.round(performance.now() - started) }, 'request');
    })();
  };

  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.certPem, key: options.tls.keyPem, minVersion: options.tls.minVersion, maxVersion: 'TLSv1.3' }, handler)
    : createHttpServer(handler);
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0; // ?wait=true may block for as long as a command runs

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      // `::` on a host without IPv6 falls back to all IPv4 addresses, as IPA does.
      if (options.host === '::' && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL')) {
        server.listen(options.port, '0.0.0.0', resolve);
        return;
      }
      reject(new AgentError('API_LISTEN_FAILED', `Cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  log.info({ host: address.address, port: address.port, tls: secure }, 'agent API listening');
  return {
    address,
    secure,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
