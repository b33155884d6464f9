/**
 * A registry that serves the OCI 1.1 referrers API, for what Debian's docker-registry (2.8)
 * does not: an HTTPS front on the same certificate that passes every request through to a real
 * TestRegistry, records the `subject` of each manifest pushed through it (answering with the
 * `OCI-Subject` header, so clients such as cosign then skip the referrers tag fallback), and
 * answers `GET /v2/<name>/referrers/<digest>` from what it recorded (optionally `artifactType`
 * filtered, as the spec allows). Access to the referrers list is checked with the caller's own
 * Authorization against the real registry.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { TestRegistry } from './registry.ts';

export interface ReferrersRegistry {
  host: string;
  /** Referrers answered so far (requests to the API). */
  apiRequests: number;
  close(): Promise<void>;
}

interface Referrer { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const HOP_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive']);

export async function startReferrersRegistry(backend: TestRegistry): Promise<ReferrersRegistry> {
  const agent = new Agent({ connect: { ca: backend.cert.cert } });
  const referrers = new Map<string, Map<string, Referrer>>();
  const state = { apiRequests: 0 };

  const forward = async (req: IncomingMessage, bytes: Buffer): Promise<{ status: number; headers: Record<string, string | string[]>; payload: Buffer }> => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_HEADERS.has(k) && typeof v === 'string') headers[k] = v;
    const up = await request(`${backend.url}${req.url ?? '/'}`, {
      method: req.method as 'GET', headers, dispatcher: agent, ...(bytes.length ? { body: bytes } : {}),
    });
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) {
      if (v === undefined || k === 'connection' || k === 'transfer-encoding' || k === 'keep-alive') continue;
      // Upload locations point at the backend: rewrite them to this front.
      out[k] = k === 'location' && typeof v === 'string' ? v.replace(backend.url, '') : v;
    }
    const payload = Buffer.from(await up.body.arrayBuffer());
    return { status: up.statusCode, headers: { ...out, 'content-length': String(payload.length) }, payload };
  };

  const serveReferrers = async (req: IncomingMessage, res: ServerResponse, repo: string, digest: string): Promise<void> => {
    state.apiRequests++;
    const check = await request(`${backend.url}/v2/${repo}/tags/list`, {
      headers: req.headers.authorization ? { authorization: req.headers.authorization } : {}, dispatcher: agent,
    });
    await check.body.dump();
    if (check.statusCode !== 200) {
      const auth = check.headers['www-authenticate'];
      res.writeHead(check.statusCode, auth ? { 'www-authenticate': auth } : {}).end();
      return;
    }
    const wanted = new URL(req.url ?? '/', 'https://x').searchParams.get('artifactType');
    const list = [...(referrers.get(`${repo}@${digest}`)?.values() ?? [])].filter((r) => !wanted || r.artifactType === wanted);
    const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: list });
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', ...(wanted ? { 'oci-filters-applied': 'artifactType' } : {}) }).end(index);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const ref = /^\/v2\/(.+)\/referrers\/([a-z0-9]+:[a-f0-9]+)$/.exec(path);
    if (ref && req.method === 'GET') return serveReferrers(req, res, ref[1]!, ref[2]!);
    const bytes = await body(req);
    const up = await forward(req, bytes);
    const manifest = /^\/v2\/(.+)\/manifests\/[^/]+$/.exec(path);
    if (manifest && req.method === 'PUT' && up.status === 201) {
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; artifactType?: string; annotations?: Record<string, string>; config?: { mediaType?: string }; subject?: { digest: string } };
      if (doc.subject) {
        const repo = manifest[1]!;
        const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        const entry: Referrer = {
          mediaType: doc.mediaType ?? 'application/vnd.oci.image.manifest.v1+json', digest, size: bytes.length,
          ...(doc.artifactType ?? doc.config?.mediaType ? { artifactType: doc.artifactType ?? doc.config?.mediaType } : {}),
          ...(doc.annotations ? { annotations: doc.annotations } : {}),
        };
        const key = `${repo}@${doc.subject.digest}`;
        if (!referrers.has(key)) referrers.set(key, new Map());
        referrers.get(key)!.set(digest, entry);
        up.headers['oci-subject'] = doc.subject.digest;
      }
    }
    res.writeHead(up.status, up.headers).end(up.payload);
  };

  const server = createServer({ cert: backend.cert.cert, key: backend.cert.key }, (req, res) => {
    handle(req, res).catch((err: unknown) => res.destroy(err instanceof Error ? err : new Error(String(err))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    get apiRequests() { return state.apiRequests; },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await agent.close();
    },
  };
}
