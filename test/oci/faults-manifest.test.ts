import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { faultClient, imageManifest, serveManifest, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';
import { MANIFEST_ACCEPT, parsePolicy } from '../../src/oci/index.ts';

let reg: FaultRegistry;
before(async () => { reg = await startFaultRegistry(); });
after(async () => { await reg.close(); });

const D = `sha256:${'1'.repeat(64)}`;
const body = (n: number): string => imageManifest({ digest: D, size: n, mediaType: 'application/vnd.oci.empty.v1+json' }, [{ digest: D, size: 1 }], { artifactType: 'application/x-test' });
const code = (c: string) => (e: { code?: string }) => e.code === c;

test('HEAD resolves the tag; everything after is pinned to that digest with all four types in Accept', async () => {
  const digest = serveManifest(reg, 'm/ok', 't', body(1));
  const { client } = faultClient(reg);
  const r = await client.resolve(`oci://${reg.host}/m/ok:t`);
  assert.equal(r.reference.digest, digest);
  const gets = reg.requestsTo('/v2/m/ok/manifests/');
  assert.deepEqual(gets.map((g) => `${g.method} ${g.path}`), ['HEAD /v2/m/ok/manifests/t', `GET /v2/m/ok/manifests/${digest}`]);
  for (const g of gets) assert.equal(g.headers.accept, MANIFEST_ACCEPT);
  await client.close();
});

test('HEAD 405 falls back to GET and hashes the body', async () => {
  const digest = serveManifest(reg, 'm/h405', 't', body(2), { head: '405' });
  const { client } = faultClient(reg);
  assert.equal((await client.resolve(`oci://${reg.host}/m/h405:t`)).reference.digest, digest);
  assert.deepEqual(reg.requestsTo('/v2/m/h405/').map((g) => g.method), ['HEAD', 'GET']);
  await client.close();
});

test('HEAD without Docker-Content-Digest falls back to GET', async () => {
  const digest = serveManifest(reg, 'm/nodigest', 't', body(3), { head: 'no-digest' });
  const { client } = faultClient(reg);
  assert.equal((await client.resolve(`oci://${reg.host}/m/nodigest:t`)).reference.digest, digest);
  await client.close();
});

test('text/plain Content-Type (CDN) is ignored; the document decides', async () => {
  serveManifest(reg, 'm/plain', 't', body(4), { contentType: 'text/plain; charset=utf-8' });
  const { client } = faultClient(reg);
  assert.equal((await client.resolve(`oci://${reg.host}/m/plain:t`)).document.kind, 'manifest');
  await client.close();
});

test('schema1 is rejected', async () => {
  serveManifest(reg, 'm/schema1', 't', JSON.stringify({ schemaVersion: 1, name: 'm/schema1', tag: 't', fsLayers: [] }), { contentType: 'application/vnd.docker.distribution.manifest.v1+prettyjws' });
  const { client } = faultClient(reg);
  await assert.rejects(client.resolve(`oci://${reg.host}/m/schema1:t`), code('OCI_MANIFEST_INVALID'));
  await client.close();
});

test('a manifest whose bytes do not match the requested digest is rejected', async () => {
  const wanted = sha256('something else');
  reg.route('GET', `/v2/m/wrong/manifests/${wanted}`, (_q, res) => res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(body(5)));
  const { client } = faultClient(reg);
  await assert.rejects(client.resolve(`oci://${reg.host}/m/wrong@${wanted}`), code('OCI_DIGEST_MISMATCH'));
  await client.close();
});

test('a tag whose Docker-Content-Digest header contradicts the body is rejected', async () => {
  serveManifest(reg, 'm/liar', 't', body(6), { head: '405', digestHeader: sha256('other') });
  const { client } = faultClient(reg);
  await assert.rejects(client.resolve(`oci://${reg.host}/m/liar:t`), code('OCI_DIGEST_MISMATCH'));
  await client.close();
});

test('sha512-addressed manifests are verified with sha512', async () => {
  const bytes = Buffer.from(body(7));
  const d512 = `sha512:${createHash('sha512').update(bytes).digest('hex')}`;
  reg.route('GET', `/v2/m/sha512/manifests/${d512}`, (_q, res) => res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(bytes));
  const { client } = faultClient(reg);
  assert.equal((await client.resolve(`oci://${reg.host}/m/sha512@${d512}`)).reference.digest, d512);
  await client.close();
});

test('manifests above 4 MiB are refused without reading them whole', async () => {
  const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
  reg.route('GET', '/v2/m/big/manifests/t', (_q, res) => res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(big));
  reg.route('HEAD', '/v2/m/big/manifests/t', (_q, res) => res.writeHead(405).end());
  const { client } = faultClient(reg);
  await assert.rejects(client.resolve(`oci://${reg.host}/m/big:t`), code('OCI_MANIFEST_INVALID'));
  await client.close();
});

test('429 with Retry-After in seconds is honoured', async () => {
  const digest = serveManifest(reg, 'm/429s', 't', body(8));
  reg.route('HEAD', '/v2/m/429s/manifests/t', (_q, res, hit) => {
    if (hit === 1) res.writeHead(429, { 'retry-after': '7' }).end();
    else res.writeHead(200, { 'docker-content-digest': digest }).end();
  });
  const { client, sleeps } = faultClient(reg);
  await client.resolve(`oci://${reg.host}/m/429s:t`);
  assert.deepEqual(sleeps, [7000]);
  await client.close();
});

test('429 with an HTTP-date Retry-After is honoured (and capped at 60 s)', async () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const digest = serveManifest(reg, 'm/429d', 't', body(9));
  reg.route('HEAD', '/v2/m/429d/manifests/t', (_q, res, hit) => {
    if (hit === 1) res.writeHead(429, { 'retry-after': new Date(now + 12_000).toUTCString() }).end();
    else if (hit === 2) res.writeHead(503, { 'retry-after': new Date(now + 3_600_000).toUTCString() }).end();
    else res.writeHead(200, { 'docker-content-digest': digest }).end();
  });
  const { client, sleeps } = faultClient(reg, { now: () => now });
  await client.resolve(`oci://${reg.host}/m/429d:t`);
  assert.deepEqual(sleeps, [12_000, 60_000]);
  await client.close();
});

test('persistent 503 ends as REGISTRY_UNAVAILABLE after bounded retries with backoff', async () => {
  reg.route('HEAD', '/v2/m/down/manifests/t', (_q, res) => res.writeHead(503).end());
  reg.route('GET', '/v2/m/down/manifests/t', (_q, res) => res.writeHead(503).end());
  const { client, sleeps } = faultClient(reg, { retry: { maxAttempts: 3 } });
  await assert.rejects(client.resolve(`oci://${reg.host}/m/down:t`), code('REGISTRY_UNAVAILABLE'));
  assert.deepEqual(sleeps, [375, 750]);
  await client.close();
});

test('404 is REGISTRY_NOT_FOUND with the registry error code in details', async () => {
  const { client } = faultClient(reg);
  await assert.rejects(client.resolve(`oci://${reg.host}/m/missing:t`), (e: { code?: string; details?: Record<string, unknown> }) =>
    e.code === 'REGISTRY_NOT_FOUND' && JSON.stringify(e.details?.['registry_errors']) === '["NAME_UNKNOWN"]');
  await client.close();
});

test('blocked registries and signature policies refuse before any request', async () => {
  const seen = reg.requests.length;
  const blocked = faultClient(reg, { registries: { registries: [{ prefix: reg.host, location: reg.host, insecure: true, blocked: true, mirrorByDigestOnly: false, mirrors: [] }] } });
  await assert.rejects(blocked.client.resolve(`oci://${reg.host}/m/ok:t`), code('REGISTRY_BLOCKED'));
  const signed = faultClient(reg, { policy: parsePolicy(JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/k' }] })) });
  await assert.rejects(signed.client.resolve(`oci://${reg.host}/m/ok:t`), code('OCI_SIGNATURE_REQUIRED'));
  assert.equal(reg.requests.length, seen);
  await blocked.client.close();
  await signed.client.close();
});
