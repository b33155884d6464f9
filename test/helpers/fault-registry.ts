/**
 * A scriptable registry on 127.0.0.1:0 for what a real registry will not do on demand:
 * truncated bodies, wrong digests, odd redirects, HEAD quirks, 429s, odd token replies.
 * Routes are `METHOD path` → handler; every request is recorded with its headers.
 */
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { OciClient, type OciClientOptions } from '../../src/oci/index.ts';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

export type Handler = (req: IncomingMessage, res: ServerResponse, hit: number) => unknown;

export interface FaultRegistry {
  /** `http(s)://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  requests: RecordedRequest[];
  route(method: string, path: string, handler: Handler): void;
  /** Requests whose path starts with `prefix` (query included in path). */
  requestsTo(prefix: string): RecordedRequest[];
  close(): Promise<void>;
}

export interface FaultRegistryOptions {
  tls?: { cert: string; key: string };
  /** Answer `GET /v2/` with 200 (default) or leave it to a route. */
  ping?: boolean;
}

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export async function startFaultRegistry(options: FaultRegistryOptions = {}): Promise<FaultRegistry> {
  const routes = new Map<string, { handler: Handler; hits: number }>();
  const requests: RecordedRequest[] = [];
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    requests.push({ method: req.method ?? 'GET', path, headers: req.headers });
    const key = `${req.method} ${path.split('?')[0]}`;
    const route = routes.get(key) ?? routes.get(`${req.method} ${path}`);
    if (route) {
      route.hits++;
      Promise.resolve(route.handler(req, res, route.hits)).catch((err: unknown) => {
        res.destroy(err instanceof Error ? err : new Error(String(err)));
      });
      return;
    }
    if (options.ping !== false && req.method === 'GET' && path === '/v2/') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: `no route for ${key}` }] }));
  };
  const server: Server = options.tls ? createHttpsServer(options.tls, listener) : createHttpServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host}`,
    host,
    requests,
    route(method, path, handler) {
      routes.set(`${method} ${path}`, { handler, hits: 0 });
    },
    requestsTo(prefix) {
      return requests.filter((r) => r.path.startsWith(prefix));
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Serve a manifest on GET and HEAD for `repo` by tag and by digest. */
export function serveManifest(
  reg: FaultRegistry,
  repo: string,
  tag: string | undefined,
  body: string | Buffer,
  options: { contentType?: string; head?: 'ok' | '405' | 'no-digest'; digestHeader?: string } = {},
): string {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const digest = sha256(bytes);
  const headers = {
    'content-type': options.contentType ?? 'application/vnd.oci.image.manifest.v1+json',
    'docker-content-digest': options.digestHeader ?? digest,
    'content-length': String(bytes.length),
  };
  for (const ref of tag ? [tag, digest] : [digest]) {
    reg.route('GET', `/v2/${repo}/manifests/${ref}`, (_req, res) => {
      res.writeHead(200, headers).end(bytes);
    });
    reg.route('HEAD', `/v2/${repo}/manifests/${ref}`, (_req, res) => {
      if (options.head === '405') res.writeHead(405).end();
      else if (options.head === 'no-digest') res.writeHead(200, { 'content-type': headers['content-type'], 'content-length': headers['content-length'] }).end();
      else res.writeHead(200, headers).end();
    });
  }
  return digest;
}

/** Serve a blob with full Range support (what a good registry does). */
export function serveBlob(reg: FaultRegistry, repo: string, bytes: Buffer, digest = sha256(bytes)): string {
  reg.route('GET', `/v2/${repo}/blobs/${digest}`, (req, res) => {
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Number(range[2]) : bytes.length - 1;
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${bytes.length}`, 'content-length': String(end - start + 1) });
      res.end(bytes.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { 'content-length': String(bytes.length), 'docker-content-digest': digest }).end(bytes);
  });
  return digest;
}

/** Send the first `n` bytes with a full Content-Length, then cut the connection. */
export function sendTruncated(res: ServerResponse, bytes: Buffer, n: number, extraHeaders: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-length': String(bytes.length), ...extraHeaders });
  res.write(bytes.subarray(0, n), () => {
    setImmediate(() => res.socket?.destroy());
  });
}

/** An OCI image manifest JSON for the given config and layers. */
export function imageManifest(config: { digest: string; size: number; mediaType?: string }, layers: { digest: string; size: number; mediaType?: string; annotations?: Record<string, string> }[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...extra,
    config: { mediaType: config.mediaType ?? 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType ?? 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size, ...(l.annotations ? { annotations: l.annotations } : {}) })),
  });
}

export interface FaultClientOptions extends OciClientOptions {
  /** Extra hosts to mark insecure (plain-http servers other than `reg`). */
  insecureHosts?: string[];
}

/**
 * A client for fault registries: plain-http servers are marked insecure in an in-memory
 * registries.conf, no policy/auth files, and sleeps are recorded instead of waited.
 */
export function faultClient(regs: FaultRegistry | FaultRegistry[], options: FaultClientOptions = {}): { client: OciClient; sleeps: number[] } {
  const sleeps: number[] = [];
  const list = Array.isArray(regs) ? regs : [regs];
  const insecure = [...list.filter((r) => r.url.startsWith('http:')).map((r) => r.host), ...(options.insecureHosts ?? [])];
  const client = new OciClient({
    registries: { registries: insecure.map((h) => ({ prefix: h, location: h, insecure: true, blocked: false, mirrorByDigestOnly: false, mirrors: [] })) },
    policy: null,
    authFilePaths: [],
    certsDirs: [],
    random: () => 0.5,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      sleeps.push(ms);
    },
    ...options,
  });
  return { client, sleeps };
}
