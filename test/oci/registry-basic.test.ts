import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Writable } from 'node:stream';
import { createOciClient, type OciClient } from '../../src/oci/index.ts';
import { pushArtifact, pushImage, pushIndex, registryUnavailable, startRegistry, zstdCompress, type TestRegistry } from '../helpers/registry.ts';

const skip = registryUnavailable();

function sink(): { stream: Writable; digest(): string; bytes(): number } {
  const hash = createHash('sha256');
  let n = 0;
  const stream = new Writable({ write(chunk: Buffer, _e, cb) { hash.update(chunk); n += chunk.length; cb(); } });
  return { stream, digest: () => `sha256:${hash.digest('hex')}`, bytes: () => n };
}

describe('real docker-registry with htpasswd (Basic) auth', { skip }, () => {
  let reg: TestRegistry;
  let client: OciClient;
  const creds = () => ({ type: 'basic' as const, username: reg.username, password: reg.password });

  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [reg.certsDir] });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  test('multi-arch index: selects the wanted platform, x86_64 ≡ amd64, sizes summed', async () => {
    const amd = await pushImage(reg, 'os/bootc', 'amd', { layers: [{ bytes: gzipSync(randomBytes(3000)) }, { bytes: await zstdCompress(randomBytes(2000)), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', annotations: { 'org.opencontainers.image.uncompressed-size': '2048' } }], labels: { 'containers.bootc': '1' } });
    const arm = await pushImage(reg, 'os/bootc', 'arm', { layers: [{ bytes: gzipSync(randomBytes(100)) }], platform: { architecture: 'arm64', os: 'linux' } });
    const index = await pushIndex(reg, 'os/bootc', 'v1', [arm, { ...amd, platform: { architecture: 'x86_64', os: 'linux' } }]);
    const image = await client.inspectImage(`oci://${reg.host}/os/bootc:v1`, { credentials: creds(), platform: { architecture: 'amd64' } });
    assert.equal(image.kind, 'bootc-image');
    assert.equal(image.resolvedDigest, index.digest);
    assert.equal(image.digest, amd.digest);
    assert.equal(image.podmanReference, `${reg.host}/os/bootc@${amd.digest}`);
    assert.equal(image.layers.length, 2);
    assert.equal(image.totalCompressedSize, image.layers[0]!.size + image.layers[1]!.size);
    assert.equal(image.totalUncompressedSize, undefined);
    assert.equal(image.layers[1]!.uncompressedSize, 2048);
    assert.equal(image.imageConfig?.labels['containers.bootc'], '1');
    const armImage = await client.inspectImage(`oci://${reg.host}/os/bootc:v1`, { credentials: creds(), platform: { architecture: 'aarch64' } });
    assert.equal(armImage.digest, arm.digest);
    await assert.rejects(client.inspectImage(`oci://${reg.host}/os/bootc:v1`, { credentials: creds(), platform: { architecture: 's390x' } }),
      (e: { code?: string }) => e.code === 'OCI_PLATFORM_NOT_FOUND');
  });

  test('nested index and artifact inspect with disktype ranking', async () => {
    const raw = await pushArtifact(reg, 'disks/fedora', 'raw', { bytes: randomBytes(5000), title: 'fedora.raw.zst', mediaType: 'application/zstd' });
    const qcow = await pushArtifact(reg, 'disks/fedora', 'qcow', { bytes: randomBytes(4000), title: 'fedora.qcow2' });
    const inner = await pushIndex(reg, 'disks/fedora', 'inner', [
      { ...qcow, platform: { architecture: 'x86_64', os: 'linux' }, annotations: { disktype: 'qemu' } },
      { ...raw, platform: { architecture: 'x86_64', os: 'linux' }, annotations: { disktype: 'applehv' } },
    ]);
    await pushIndex(reg, 'disks/fedora', 'v1', [inner]);
    const http = await client.inspectImage(`oci://${reg.host}/disks/fedora:v1`, { credentials: creds(), platform: { architecture: 'amd64' }, kind: 'artifact' });
    assert.equal(http.kind, 'artifact');
    assert.equal(http.digest, raw.digest);
    assert.equal(http.fileName, 'fedora.raw.zst');
    assert.equal(http.compression, 'zstd');
    assert.equal(http.diskFormat, 'raw');
    assert.equal(http.artifactType, 'application/vnd.unknown.artifact.v1');
    const local = await client.inspectImage(`oci://${reg.host}/disks/fedora:v1`, { credentials: creds(), platform: { architecture: 'amd64' }, downloadSource: 'local' });
    assert.equal(local.digest, qcow.digest);
    assert.equal(local.compression, 'none');
    await assert.rejects(client.inspectImage(`oci://${reg.host}/disks/fedora:v1`, { credentials: creds(), platform: { architecture: 'amd64' }, kind: 'bootc-image' }),
      (e: { code?: string }) => e.code === 'OCI_PLATFORM_NOT_FOUND');
  });

  test('blob streaming with digest verification (sha256, sha512, empty blob)', async () => {
    const payload = randomBytes(3 * 1024 * 1024 + 7);
    const image = await pushImage(reg, 'blobs/x', 'v1', { layers: [{ bytes: payload }, { bytes: randomBytes(999), algorithm: 'sha512' }, { bytes: Buffer.alloc(0) }] });
    const inspected = await client.inspectImage(`oci://${reg.host}/blobs/x@${image.digest}`, { credentials: creds(), platform: { architecture: 'amd64' } });
    const progress: number[] = [];
    for (const layer of inspected.layers) {
      const out = sink();
      await client.downloadBlob(inspected, layer, out.stream, { credentials: creds(), onProgress: (p) => progress.push(p.bytes) });
      assert.equal(out.bytes(), layer.size);
    }
    const first = sink();
    await client.downloadBlob(inspected, inspected.layers[0]!, first.stream, { credentials: creds() });
    assert.equal(first.digest(), inspected.layers[0]!.digest);
    assert.equal(progress.at(-1), 999);
    assert.ok(progress.includes(payload.length));
    assert.ok(inspected.layers[1]!.digest.startsWith('sha512:'));
  });

  test('wrong password and no credentials are REGISTRY_AUTH_FAILED', async () => {
    await pushImage(reg, 'private/x', 'v1', { layers: [{ bytes: randomBytes(10) }] });
    await assert.rejects(client.resolve(`oci://${reg.host}/private/x:v1`, { credentials: { type: 'basic', username: reg.username, password: 'wrong' } }),
      (e: { code?: string }) => e.code === 'REGISTRY_AUTH_FAILED');
    await assert.rejects(client.resolve(`oci://${reg.host}/private/x:v1`), (e: { code?: string }) => e.code === 'REGISTRY_AUTH_FAILED');
  });

  test('missing tag is REGISTRY_NOT_FOUND; without the CA TLS fails as REGISTRY_UNREACHABLE', async () => {
    await assert.rejects(client.resolve(`oci://${reg.host}/private/x:nope`, { credentials: creds() }), (e: { code?: string }) => e.code === 'REGISTRY_NOT_FOUND');
    const noCa = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [], retry: { maxAttempts: 1 } });
    try {
      await assert.rejects(noCa.resolve(`oci://${reg.host}/private/x:v1`, { credentials: creds() }),
        (e: { code?: string; message: string }) => e.code === 'REGISTRY_UNREACHABLE' && /certificate/i.test(e.message));
    } finally {
      await noCa.close();
    }
  });
});
