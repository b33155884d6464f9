/**
 * Uploads against a scripted registry, for what a real one will not do on demand: a 503 or a cut
 * connection mid-upload (the whole upload starts again from POST, with back-off), a registry that
 * keeps failing, a digest header naming other content, a Range that disagrees with what was sent,
 * a refused manifest with the registry's error text.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { after, afterEach, before, describe, test } from 'node:test';
import { isAgentError } from '../../src/errors.ts';
import { bufferBlob, MEDIA_TYPES, openRepositoryPusher, type RegistriesConfig } from '../../src/oci/index.ts';
import { faultClient, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';

async function bodyOf(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of req) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

describe('blob and manifest uploads against a scripted registry', () => {
  let reg: FaultRegistry;
  let registries: RegistriesConfig;
  const base = '/v2/up/load/blobs/uploads/';

  before(async () => {
    reg = await startFaultRegistry();
    registries = { registries: [{ prefix: reg.host, location: reg.host, insecure: true, blocked: false, mirrorByDigestOnly: false, mirrors: [] }] };
  });
  afterEach(() => {
    reg.requests.length = 0;
  });
  after(() => reg.close());

  // POST answers 202 with a fresh session each time; the session URL takes PATCH/PUT.
  function uploadRoutes(onPut: (req: IncomingMessage, body: Buffer, res: import('node:http').ServerResponse, hit: number) => void, onPatch?: (req: IncomingMessage, body: Buffer, res: import('node:http').ServerResponse, hit: number) => void) {
    reg.route('POST', base, (_req, res, hit) => res.writeHead(202, { location: `${base}s${hit}`, 'content-length': '0' }).end());
    for (let s = 1; s <= 5; s++) {
      reg.route('PUT', `${base}s${s}`, async (req, res, hit) => onPut(req, await bodyOf(req), res, hit));
      if (onPatch) reg.route('PATCH', `${base}s${s}`, async (req, res, hit) => onPatch(req, await bodyOf(req), res, hit));
    }
  }

  test('a 503 on the PUT starts the upload again from POST, after a back-off', async () => {
    const bytes = randomBytes(5000);
    let stored: Buffer | undefined;
    let puts = 0;
    uploadRoutes((req, body, res) => {
      if (++puts === 1) return res.writeHead(503).end();
      assert.equal(new URL(req.url!, 'http://x').searchParams.get('digest'), sha256(bytes));
      stored = body;
      return res.writeHead(201, { 'docker-content-digest': sha256(bytes) }).end();
    });
    const { client, sleeps } = faultClient(reg);
    try {
      const pusher = await openRepositoryPusher(client, `oci://${reg.host}/up/load`, { registries });
      assert.equal(await pusher.pushBlob(bufferBlob(bytes), { chunkSize: 0 }), 'uploaded');
    } finally {
      await client.close();
    }
    assert.deepEqual(stored, bytes);
    assert.deepEqual(reg.requests.filter((r) => r.path.includes('/blobs/')).map((r) => `${r.method} ${r.path.split('?')[0]}`),
      [`HEAD /v2/up/load/blobs/${sha256(bytes)}`, `POST ${base}`, `PUT ${base}s1`, `POST ${base}`, `PUT ${base}s2`]);
    assert.equal(sleeps.length, 1);
  });

  test('a connection cut during a PATCH restarts the chunked upload; every byte arrives once in the end', async () => {
    const bytes = randomBytes(10_000);
    const received = new Map<string, Buffer[]>();
    let cut = false;
    uploadRoutes((req, _body, res) => {
      const session = req.url!.split('?')[0]!;
      const all = Buffer.concat(received.get(session) ?? []);
      assert.deepEqual(all, bytes);
      res.writeHead(201, { 'docker-content-digest': sha256(bytes) }).end();
    }, (req, body, res) => {
      const session = req.url!.split('?')[0]!;
      if (!cut && (received.get(session)?.length ?? 0) === 1) {
        cut = true;
        return res.destroy();
      }
      const list = received.get(session) ?? [];
      const start = list.reduce((n, b) => n + b.length, 0);
      assert.equal(req.headers['content-range'], `${start}-${start + body.length - 1}`);
      list.push(body);
      received.set(session, list);
      return res.writeHead(202, { location: session, range: `0-${start + body.length - 1}`, 'content-length': '0' }).end();
    });
    const { client, sleeps } = faultClient(reg);
    try {
      const pusher = await openRepositoryPusher(client, `oci://${reg.host}/up/load`, { registries });
      assert.equal(await pusher.pushBlob(bufferBlob(bytes), { chunkSize: 4096 }), 'uploaded');
    } finally {
      await client.close();
    }
    assert.ok(cut);
    assert.equal(sleeps.length, 1);
    const methods = reg.requests.filter((r) => r.path.includes('/blobs/')).map((r) => r.method);
    assert.deepEqual(methods, ['HEAD', 'POST', 'PATCH', 'PATCH', 'POST', 'PATCH', 'PATCH', 'PATCH', 'PUT']);
  });

  test('a registry that keeps answering 503: REGISTRY_UNAVAILABLE after the policy\'s attempts', async () => {
    uploadRoutes((_req, _body, res) => res.writeHead(503).end());
    const { client, sleeps } = faultClient(reg, { retry: { maxAttempts: 3 } });
    try {
      const pusher = await openRepositoryPusher(client, `oci://${reg.host}/up/load`, { registries });
      await assert.rejects(pusher.pushBlob(bufferBlob(randomBytes(100)), { chunkSize: 0 }), (e: unknown) => isAgentError(e) && e.code === 'REGISTRY_UNAVAILABLE' && /HTTP 503 after 3 attempts/.test(e.message));
      assert.equal(sleeps.length, 2);
    } finally {
      await client.close();
    }
  });

  test('a digest header naming other content, a Range that disagrees: typed, no retry', async () => {
    uploadRoutes((_req, _body, res) => res.writeHead(201, { 'docker-content-digest': sha256('something else') }).end(),
      (_req, _body, res) => res.writeHead(202, { location: `${base}s1`, range: '0-9', 'content-length': '0' }).end());
    const { client } = faultClient(reg);
    try {
      const pusher = await openRepositoryPusher(client, `oci://${reg.host}/up/load`, { registries });
      await assert.rejects(pusher.pushBlob(bufferBlob(randomBytes(100)), { chunkSize: 0 }), (e: unknown) => isAgentError(e) && e.code === 'OCI_DIGEST_MISMATCH');
      await assert.rejects(pusher.pushBlob(bufferBlob(randomBytes(300)), { chunkSize: 100 }), (e: unknown) => isAgentError(e) && e.code === 'REGISTRY_PROTOCOL' && /holds bytes 0-9 after a chunk ending at 99/.test(e.message));
    } finally {
      await client.close();
    }
  });

  test('a refused manifest: OCI_PUSH_FAILED quoting the registry, Content-Type as given', async () => {
    reg.route('PUT', '/v2/up/load/manifests/v1', (_req, res) => res.writeHead(400, { 'content-type': 'application/json' })
      .end(JSON.stringify({ errors: [{ code: 'MANIFEST_INVALID', message: 'manifest invalid', detail: { reason: 'layers missing' } }] })));
    const { client } = faultClient(reg);
    try {
      const pusher = await openRepositoryPusher(client, `oci://${reg.host}/up/load`, { registries });
      const err = await pusher.pushManifest(Buffer.from('{"schemaVersion":2}'), MEDIA_TYPES.ociManifest, 'v1').then(() => undefined, (e: unknown) => e);
      assert.ok(isAgentError(err));
      assert.equal(err.code, 'OCI_PUSH_FAILED');
      assert.match(err.message, /manifest .*up\/load:v1: HTTP 400 \(manifest invalid\)/);
      assert.deepEqual(err.details['registry_errors'], ['MANIFEST_INVALID']);
      const put = reg.requests.find((r) => r.method === 'PUT')!;
      assert.equal(put.headers['content-type'], MEDIA_TYPES.ociManifest);
    } finally {
      await client.close();
    }
  });
});
