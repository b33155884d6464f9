/**
 * Pushing with our OCI client to a real docker-registry (TLS; htpasswd and token auth): blob
 * uploads monolithic and chunked (seen on the wire through undici's diagnostics channel), an
 * existing blob skipped, cross-repository mounts and their fallback, manifests by tag and digest,
 * wrong credentials; what was pushed is read back with our client and with skopeo.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { isAgentError } from '../../src/errors.ts';
import {
  artifactIndex, artifactManifest, bufferBlob, createOciClient, EMPTY_CONFIG_BYTES, MEDIA_TYPES, openRepositoryPusher,
  type Credentials, type OciClient,
} from '../../src/oci/index.ts';
import { skopeoRaw, writeAuthFile } from '../helpers/ramdisk-build.ts';
import { registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { toolMissing } from '../helpers/tools.ts';

const skip = registryUnavailable() ?? toolMissing('skopeo');
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Seen { method: string; path: string }

// Every request undici starts in this process, by method and path (the upload protocol as sent).
function recordRequests(): { seen: Seen[]; stop(): void } {
  const seen: Seen[] = [];
  const onCreate = (message: unknown): void => {
    const { request } = message as { request: { method: string; path: string } };
    seen.push({ method: request.method, path: request.path });
  };
  diagnostics.subscribe('undici:request:create', onCreate);
  return { seen, stop: () => diagnostics.unsubscribe('undici:request:create', onCreate) };
}

async function readBlob(client: OciClient, reg: TestRegistry, repo: string, digest: string, size: number, credentials?: Credentials): Promise<Buffer> {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (c: Buffer) => parts.push(c));
  const ref = { registry: reg.host, repository: repo, tag: undefined, digest };
  await client.downloadBlob({ reference: ref, source: { registry: reg.host, repository: repo, insecure: false, mirror: false } },
    { mediaType: 'application/octet-stream', digest, size }, out, { credentials });
  return Buffer.concat(parts);
}

describe('push to a real registry (TLS + htpasswd)', { skip }, () => {
  let reg: TestRegistry;
  let client: OciClient;
  let dir: string;
  let authFile: string;

  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
    dir = await mkdtemp(join(tmpdir(), 'oci-push-'));
    authFile = await writeAuthFile(join(dir, 'auth.json'), reg);
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [authFile], certsDirs: [reg.certsDir] });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('monolithic upload: HEAD, POST, one PUT ?digest=; then the same blob is skipped after one HEAD', async () => {
    const bytes = randomBytes(200 * 1024 + 3);
    const pusher = await openRepositoryPusher(client, `oci://${reg.host}/push/mono`);
    const rec = recordRequests();
    let outcome;
    try {
      outcome = await pusher.pushBlob(bufferBlob(bytes), { chunkSize: 0 });
    } finally {
      rec.stop();
    }
    assert.equal(outcome, 'uploaded');
    const upload = rec.seen.filter((s) => s.path.includes('/blobs/'));
    assert.deepEqual(upload.map((s) => s.method), ['HEAD', 'POST', 'PUT']);
    assert.match(upload[2]!.path, new RegExp(`[?&]digest=${encodeURIComponent(sha256(bytes)).replace(/%3A/, '(%3A|:)')}`));
    assert.deepEqual(await readBlob(client, reg, 'push/mono', sha256(bytes), bytes.length), bytes);

    const again = recordRequests();
    try {
      assert.equal(await pusher.pushBlob(bufferBlob(bytes), { chunkSize: 0 }), 'exists');
    } finally {
      again.stop();
    }
    assert.deepEqual(again.seen.filter((s) => s.path.includes('/blobs/')).map((s) => s.method), ['HEAD']);
  });

  test('chunked upload: PATCH per chunk with Content-Range, a closing PUT, bytes intact', async () => {
    const bytes = randomBytes(5 * 64 * 1024 + 1234);
    const pusher = await openRepositoryPusher(client, `oci://${reg.host}/push/chunked`);
    const progress: number[] = [];
    const rec = recordRequests();
    try {
      assert.equal(await pusher.pushBlob(bufferBlob(bytes), { chunkSize: 64 * 1024, onProgress: (sent) => progress.push(sent) }), 'uploaded');
    } finally {
      rec.stop();
    }
    const methods = rec.seen.filter((s) => s.path.includes('/blobs/')).map((s) => s.method);
    assert.deepEqual(methods, ['HEAD', 'POST', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PUT']);
    assert.equal(progress.at(-1), bytes.length);
    assert.deepEqual(await readBlob(client, reg, 'push/chunked', sha256(bytes), bytes.length), bytes);
  });

  test('cross-repository mount when the source has the blob; an upload when the registry answers 202', async () => {
    const bytes = randomBytes(150 * 1024);
    const source = await openRepositoryPusher(client, `oci://${reg.host}/push/source`);
    await source.pushBlob(bufferBlob(bytes));
    const target = await openRepositoryPusher(client, `oci://${reg.host}/push/target`);
    const rec = recordRequests();
    try {
      assert.equal(await target.pushBlob(bufferBlob(bytes), { mountFrom: 'push/source' }), 'mounted');
    } finally {
      rec.stop();
    }
    const post = rec.seen.find((s) => s.method === 'POST')!;
    assert.match(post.path, /\?mount=sha256%3A[0-9a-f]{64}&from=push%2Fsource$/);
    assert.ok(!rec.seen.some((s) => s.method === 'PUT' || s.method === 'PATCH'), 'a mount sends no bytes');
    assert.deepEqual(await readBlob(client, reg, 'push/target', sha256(bytes), bytes.length), bytes);

    const other = randomBytes(1000);
    const fallback = await openRepositoryPusher(client, `oci://${reg.host}/push/target2`);
    assert.equal(await fallback.pushBlob(bufferBlob(other), { mountFrom: 'push/nothing-here' }), 'uploaded');
    assert.deepEqual(await readBlob(client, reg, 'push/target2', sha256(other), other.length), other);
  });

  test('manifests by tag and by digest, read back byte for byte by skopeo', async () => {
    const pusher = await openRepositoryPusher(client, `oci://${reg.host}/push/docs:ignored`);
    const file = randomBytes(4096);
    await pusher.pushBlob(bufferBlob(EMPTY_CONFIG_BYTES));
    await pusher.pushBlob(bufferBlob(file));
    const manifest = artifactManifest({ artifactType: 'application/vnd.test.file.v1', files: [{ title: 'file.bin', mediaType: 'application/octet-stream', digest: sha256(file), size: file.length }] });
    const byDigest = await pusher.pushManifest(manifest, MEDIA_TYPES.ociManifest);
    assert.equal(byDigest.digest, sha256(manifest));
    const index = artifactIndex([{ ...byDigest, platform: { architecture: 'arm64', os: 'linux' }, artifactType: 'application/vnd.test.file.v1' }]);
    const tagged = await pusher.pushManifest(index, MEDIA_TYPES.ociIndex, 'v1');
    const viaTag = await skopeoRaw(reg, authFile, `${reg.host}/push/docs:v1`);
    assert.equal(viaTag.raw, index.toString());
    assert.equal(sha256(Buffer.from(viaTag.raw)), tagged.digest);
    const viaDigest = await skopeoRaw(reg, authFile, `${reg.host}/push/docs@${byDigest.digest}`);
    assert.equal(viaDigest.raw, manifest.toString());
    const m = viaDigest.json as { config: { mediaType: string; digest: string; size: number }; layers: { annotations: Record<string, string> }[]; artifactType: string };
    assert.equal(m.config.mediaType, 'application/vnd.oci.empty.v1+json');
    assert.equal(m.config.size, 2);
    assert.equal(m.artifactType, 'application/vnd.test.file.v1');
    assert.equal(m.layers[0]!.annotations['org.opencontainers.image.title'], 'file.bin');
  });

  test('refusals are typed: a digest the bytes do not hash to, a manifest naming a missing blob', async () => {
    const pusher = await openRepositoryPusher(client, `oci://${reg.host}/push/bad`);
    const bytes = randomBytes(512);
    const lying = { ...bufferBlob(bytes), digest: sha256(randomBytes(8)) };
    await assert.rejects(pusher.pushBlob(lying, { chunkSize: 0 }), (e: unknown) => isAgentError(e) && e.code === 'OCI_PUSH_FAILED' && /digest/i.test(e.message));
    const manifest = artifactManifest({ artifactType: 'application/vnd.test.file.v1', files: [{ title: 'x', mediaType: 'application/octet-stream', digest: sha256(randomBytes(9)), size: 9 }] });
    await assert.rejects(pusher.pushManifest(manifest, MEDIA_TYPES.ociManifest, 'v1'), (e: unknown) => isAgentError(e) && e.code === 'OCI_PUSH_FAILED' && /blob unknown|manifest blob unknown/i.test(e.message));
    await assert.rejects(pusher.pushManifest(manifest, MEDIA_TYPES.ociManifest, 'bad tag!'), (e: unknown) => isAgentError(e) && e.code === 'OCI_REFERENCE_INVALID');
  });

  test('wrong credentials: REGISTRY_AUTH_FAILED, the password nowhere in the error', async () => {
    const wrong = 'S3cret-wrong-password-xyz';
    const bad = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [reg.certsDir] });
    try {
      const pusher = await openRepositoryPusher(bad, `oci://${reg.host}/push/denied`, { credentials: { type: 'basic', username: reg.username, password: wrong } });
      const err = await pusher.pushBlob(bufferBlob(randomBytes(64))).then(() => undefined, (e: unknown) => e);
      assert.ok(isAgentError(err), String(err));
      assert.equal(err.code, 'REGISTRY_AUTH_FAILED');
      const shown = JSON.stringify({ message: err.message, details: err.details, stack: err.stack });
      assert.ok(!shown.includes(wrong) && !shown.includes(Buffer.from(`${reg.username}:${wrong}`).toString('base64')), shown);
    } finally {
      await bad.close();
    }
  });
});

describe('push to a real registry with token auth', { skip }, () => {
  let reg: TestRegistry;
  let client: OciClient;

  before(async () => {
    reg = await startRegistry({ auth: 'token' });
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [reg.certsDir] });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  test('asks for repository:NAME:pull,push (and pull on the mount source); pushes and mounts', async () => {
    const credentials = { type: 'basic' as const, username: reg.username, password: reg.password };
    const bytes = randomBytes(70 * 1024);
    const a = await openRepositoryPusher(client, `oci://${reg.host}/tok/a`, { credentials });
    assert.equal(await a.pushBlob(bufferBlob(bytes), { chunkSize: 32 * 1024 }), 'uploaded');
    const b = await openRepositoryPusher(client, `oci://${reg.host}/tok/b`, { credentials });
    const before = reg.tokenServer!.requests.length;
    assert.equal(await b.pushBlob(bufferBlob(bytes), { mountFrom: 'tok/a' }), 'mounted');
    const scopes = reg.tokenServer!.requests.map((r) => r.url.searchParams.getAll('scope'));
    assert.ok(scopes.some((s) => s.includes('repository:tok/a:pull,push')), JSON.stringify(scopes));
    assert.ok(scopes.slice(before).some((s) => s.includes('repository:tok/b:pull,push') && s.includes('repository:tok/a:pull')), JSON.stringify(scopes));
    assert.deepEqual(await readBlob(client, reg, 'tok/b', sha256(bytes), bytes.length, credentials), bytes);
  });

  test('anonymous push is refused with REGISTRY_AUTH_FAILED', async () => {
    const anon = await openRepositoryPusher(client, `oci://${reg.host}/tok/anon`);
    await assert.rejects(anon.pushBlob(bufferBlob(randomBytes(10))), (e: unknown) => isAgentError(e) && e.code === 'REGISTRY_AUTH_FAILED');
  });
});
