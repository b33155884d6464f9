/**
 * Images hashed on a worker thread (src/oci/stream-hash.ts; the policy's size and core count
 * lowered so that it is used on any machine, with an image of a few MiB): the OCI blob
 * digest and the http(s) checksum (sha256, sha512) are still checked before the write reports
 * success, a mismatch still fails it and wipes the target, a restart from zero still re-checks
 * the prefix, and no hashing thread outlives the write.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentError } from '../../src/errors.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { writeArtifactToTarget, type WriteArtifactOptions } from '../../src/image/index.ts';
import { hashThreadPolicy, runningHashThreads } from '../../src/oci/stream-hash.ts';
import { faultClient, imageManifest, sendTruncated, serveBlob, serveManifest, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';
import { hasNoSignature, makeGptImage, readHead, startHttpsServer, suiteLoopDevice, tempDir, toolMissing, type HttpsServer } from './helpers.ts';

const EMPTY = Buffer.from('{}');
const hex = (algorithm: string, b: Buffer) => createHash(algorithm).update(b).digest('hex');
const MiB = 1024 * 1024;

function artifact(reg: FaultRegistry, repo: string, layer: { digest: string; size: number }): void {
  serveBlob(reg, repo, EMPTY);
  serveManifest(reg, repo, 'v1', imageManifest(
    { digest: sha256(EMPTY), size: EMPTY.length, mediaType: 'application/vnd.oci.empty.v1+json' },
    [{ ...layer, mediaType: 'application/vnd.oci.image.layer.v1.tar', annotations: { 'org.opencontainers.image.title': 'disk.raw' } }],
    { artifactType: 'application/vnd.unknown.artifact.v1' },
  ));
}

function failsWith(expected: string, check: (e: AgentError) => void = () => {}) {
  return (e: unknown) => {
    assert.ok(e instanceof AgentError, String(e));
    assert.equal(e.code, expected, `${e.code}: ${e.message}`);
    check(e);
    return true;
  };
}

describe('images hashed on a worker thread', { skip: toolMissing('sgdisk', 'openssl') }, () => {
  const runner = createExecaRunner();
  let reg: FaultRegistry;
  let server: HttpsServer;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let image: Buffer;
  // Highest number of hashing threads seen during a write (read from its progress reports).
  let seen = 0;
  const watch = (): Pick<WriteArtifactOptions, 'onProgress'> => {
    seen = 0;
    return { onProgress: () => { seen = Math.max(seen, runningHashThreads()); } };
  };

  const policy = { ...hashThreadPolicy };
  before(async () => {
    Object.assign(hashThreadPolicy, { minBytes: 8 * MiB, minCores: 1 });
    tmp = await tempDir('image-hash-thread-');
    reg = await startFaultRegistry();
    server = await startHttpsServer(tmp.dir);
    image = await makeGptImage(tmp.dir, 24);
    // Chunked, without Content-Length: the size is unknown, as from many web servers.
    server.route('/chunked.raw', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let o = 0; o < image.length; o += 4 * MiB) res.write(image.subarray(o, o + 4 * MiB));
      res.end();
    });
  });
  after(async () => {
    Object.assign(hashThreadPolicy, policy);
    await reg?.close();
    await server?.close();
    await tmp?.cleanup();
  });

  test('oci: cut mid-blob, the resume answered 200: restarted, the prefix re-checked, written and verified', async () => {
    const digest = sha256(image);
    artifact(reg, 'big/restart', { digest, size: image.length });
    reg.route('GET', `/v2/big/restart/blobs/${digest}`, (_req, res, hit) => {
      if (hit === 1) return sendTruncated(res, image, 10 * MiB + 5);
      res.writeHead(200, { 'content-length': String(image.length) }).end(image);
    });
    const { client } = faultClient(reg);
    try {
      const out = join(tmp.dir, 'restart.raw');
      const result = await writeArtifactToTarget({ source: `oci://${reg.host}/big/restart:v1`, target: out, oci: client, runner, platform: { architecture: 'amd64' }, ...watch() });
      assert.equal(result.digest, digest);
      assert.equal(hex('sha256', await readFile(out)), hex('sha256', image));
      assert.equal(seen, 1, 'the blob was hashed on a worker thread');
      assert.equal(runningHashThreads(), 0);
    } finally {
      await client.close();
    }
  });

  test('oci: restarted with other bytes: the prefix check fails the write', async () => {
    const digest = sha256(image);
    const other = Buffer.from(image);
    other[MiB] = (other[MiB] ?? 0) ^ 0xff;
    artifact(reg, 'big/changed', { digest, size: image.length });
    reg.route('GET', `/v2/big/changed/blobs/${digest}`, (_req, res, hit) => {
      if (hit === 1) return sendTruncated(res, image, 10 * MiB + 5);
      res.writeHead(200, { 'content-length': String(image.length) }).end(other);
    });
    const { client } = faultClient(reg);
    try {
      await assert.rejects(writeArtifactToTarget({ source: `oci://${reg.host}/big/changed:v1`, target: join(tmp.dir, 'changed.raw'), oci: client, runner, platform: { architecture: 'amd64' } }),
        failsWith('OCI_DIGEST_MISMATCH', (e) => assert.match(e.message, /changed between attempts/)));
      assert.equal(runningHashThreads(), 0);
    } finally {
      await client.close();
    }
  });

  test('https, size unknown, sha512 checksum: verified on the thread, reported', async () => {
    const out = join(tmp.dir, 'chunked.raw');
    const result = await writeArtifactToTarget({
      source: `${server.url}/chunked.raw`, target: out, runner, http: { ca: server.cert.cert, retries: 0 },
      checksum: { algorithm: 'sha512', value: hex('sha512', image) }, ...watch(),
    });
    assert.equal(result.digest, `sha512:${hex('sha512', image)}`);
    assert.equal(result.checksumVerified, true);
    assert.equal(hex('sha256', await readFile(out)), hex('sha256', image));
    assert.equal(seen, 1);
    assert.equal(runningHashThreads(), 0);
  });

  test('https, size unknown, wrong sha256: IMAGE_CHECKSUM_MISMATCH and the file deleted', async () => {
    const out = join(tmp.dir, 'chunked-bad.raw');
    await assert.rejects(writeArtifactToTarget({
      source: `${server.url}/chunked.raw`, target: out, runner, http: { ca: server.cert.cert, retries: 0 },
      checksum: { algorithm: 'sha256', value: 'e'.repeat(64) },
    }), failsWith('IMAGE_CHECKSUM_MISMATCH', (e) => {
      assert.equal(e.details.actual, hex('sha256', image));
      assert.equal(e.details.cleanup, 'deleted');
    }));
    assert.equal(existsSync(out), false);
    assert.equal(runningHashThreads(), 0);
  });

  test('below the policy\'s size the hash stays on this thread', async () => {
    const small = image.subarray(0, 4 * MiB);
    const digest = serveBlob(reg, 'big/small', small);
    artifact(reg, 'big/small', { digest, size: small.length });
    const { client } = faultClient(reg);
    try {
      const result = await writeArtifactToTarget({ source: `oci://${reg.host}/big/small:v1`, target: join(tmp.dir, 'small.raw'), oci: client, runner, platform: { architecture: 'amd64' }, ...watch() });
      assert.equal(result.digest, digest);
      assert.equal(seen, 0);
    } finally {
      await client.close();
    }
  });

  describe('to a real loop device (O_DIRECT)', () => {
    const loop = suiteLoopDevice(() => tmp.dir, 32);

    test('oci: bytes that do not match the digest: OCI_DIGEST_MISMATCH after the last byte, the disk wiped', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      const forged = Buffer.concat([image.subarray(0, image.length - 4096), randomBytes(4096)]);
      const digest = sha256(image);
      artifact(reg, 'big/forged', { digest, size: image.length });
      serveBlob(reg, 'big/forged', forged, digest);
      const { client } = faultClient(reg);
      try {
        await assert.rejects(writeArtifactToTarget({ source: `oci://${reg.host}/big/forged:v1`, target: loop.device, oci: client, runner, platform: { architecture: 'amd64' }, ...watch() }),
          failsWith('OCI_DIGEST_MISMATCH', (e) => assert.equal(e.details.bytes_written, image.length)));
        assert.equal(seen, 1);
        assert.ok(hasNoSignature(loop.device), 'the disk was wiped');
        assert.equal(runningHashThreads(), 0);
      } finally {
        await client.close();
      }
    });

    test('oci: the right bytes are on the device', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      const digest = serveBlob(reg, 'big/ok', image);
      artifact(reg, 'big/ok', { digest, size: image.length });
      const { client } = faultClient(reg);
      try {
        const result = await writeArtifactToTarget({ source: `oci://${reg.host}/big/ok:v1`, target: loop.device, oci: client, runner, platform: { architecture: 'amd64' } });
        assert.equal(result.digest, digest);
        assert.ok((await readHead(loop.device, image.length)).equals(image));
      } finally {
        await client.close();
      }
    });
  });
});
