/**
 * writeArtifactToTarget against a real docker-registry (TLS + htpasswd): one-file artifacts,
 * raw, zstd and gzip, to a file and to a real loop device; platform and disktype selection
 * through an index. Loop-device tests need root and are skipped with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createExecaRunner } from '../../src/exec/index.ts';
import { writeArtifactToTarget, type WriteProgress } from '../../src/image/index.ts';
import { createOciClient, parsePolicy, type OciClient } from '../../src/oci/index.ts';
import { pushArtifact, pushIndex, registryUnavailable, startRegistry, zstdCompress, type TestRegistry } from '../helpers/registry.ts';
import { makeBundle, makeKey, pushBundleReferrer } from '../helpers/signatures.ts';
import { makeGptImage, readHead, suiteLoopDevice, tempDir, toolMissing, toQcow2 } from './helpers.ts';

const skip = registryUnavailable() ?? toolMissing('zstd', 'sgdisk', 'qemu-img');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('oci:// disk images from a real registry', { skip }, () => {
  const runner = createExecaRunner();
  let reg: TestRegistry;
  let client: OciClient;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let image: Buffer;
  const credentials = () => ({ type: 'basic' as const, username: reg.username, password: reg.password });

  before(async () => {
    tmp = await tempDir('image-oci-');
    reg = await startRegistry({ auth: 'basic' });
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [reg.certsDir] });
    image = await makeGptImage(tmp.dir, 8);
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
    await tmp?.cleanup();
  });

  // Issue 15: an oci:// disk image whose policy asks for a signature is verified before a byte is read.
  test('a signed raw artifact: the bundle is verified and reported; unsigned or forged, nothing is written', async () => {
    const key = makeKey();
    const signed = await pushArtifact(reg, 'disks/signed', 'v1', { bytes: image, title: 'disk.raw' });
    await pushBundleReferrer(reg, 'disks/signed', signed, makeBundle(key, signed.digest), true);
    await pushArtifact(reg, 'disks/unsigned', 'v1', { bytes: image, title: 'disk.raw' });
    const requirement = (publicPem: string) => [{ type: 'sigstoreSigned', keyData: Buffer.from(publicPem).toString('base64'), signedIdentity: { type: 'matchRepository' } }];
    const policy = (publicPem: string) => parsePolicy(JSON.stringify({ default: requirement(publicPem) }));
    const write = async (repo: string, publicPem: string, out: string) => {
      const verifying = createOciClient({ registries: { registries: [] }, policy: policy(publicPem), authFilePaths: [], certsDirs: [reg.certsDir] });
      try {
        return await writeArtifactToTarget({ source: `oci://${reg.host}/${repo}:v1`, target: out, oci: verifying, runner, credentials: credentials(), platform: { architecture: 'amd64' } });
      } finally {
        await verifying.close();
      }
    };
    const out = join(tmp.dir, 'signed.out');
    const result = await write('disks/signed', key.publicPem, out);
    assert.equal(sha256(await readFile(out)), sha256(image));
    assert.equal(result.oci?.signatures?.[0]?.format, 'sigstore-bundle');
    assert.equal(result.oci?.signatures?.[0]?.digest, signed.digest);
    for (const [repo, publicPem, code] of [['disks/unsigned', key.publicPem, 'OCI_SIGNATURE_MISSING'], ['disks/signed', makeKey().publicPem, 'OCI_SIGNATURE_INVALID']] as const) {
      const target = join(tmp.dir, `${repo.replace('/', '-')}-${code}.out`);
      await assert.rejects(write(repo, publicPem, target), (err: { code?: string }) => err.code === code);
      assert.ok(!existsSync(target), `${target} was created`);
    }
  });

  test('raw artifact to a file: bytes, blob digest, phases and progress', async () => {
    const pushed = await pushArtifact(reg, 'disks/raw', 'v1', { bytes: image, title: 'disk.raw' });
    const out = join(tmp.dir, 'raw.out');
    const progress: WriteProgress[] = [];
    const result = await writeArtifactToTarget({
      source: `oci://${reg.host}/disks/raw:v1`, target: out, oci: client, runner, credentials: credentials(),
      platform: { architecture: 'amd64' }, onProgress: (p) => progress.push(p),
    });
    assert.equal(sha256(await readFile(out)), sha256(image));
    assert.equal(result.bytes, image.length);
    assert.equal(result.downloadedBytes, image.length);
    assert.equal(result.digest, `sha256:${sha256(image)}`);
    assert.equal(result.compression, 'none');
    assert.equal(result.diskFormat, 'raw');
    assert.equal(result.target.kind, 'file');
    assert.equal(result.oci?.manifestDigest, pushed.digest);
    assert.equal(result.oci?.fileName, 'disk.raw');
    assert.ok(typeof result.phases.network === 'number' && typeof result.phases.disk === 'number', JSON.stringify(result.phases));
    assert.ok(result.seconds > 0);
    assert.ok(progress.length > 0);
    assert.equal(progress.at(-1)!.bytesDownloaded, image.length);
    assert.equal(progress.at(-1)!.bytesWritten, image.length);
  });

  test('zstd layer (application/zstd) is decompressed on the fly', async () => {
    const compressed = await zstdCompress(image);
    await pushArtifact(reg, 'disks/zst', 'v1', { bytes: compressed, title: 'disk.raw.zst', mediaType: 'application/zstd' });
    const out = join(tmp.dir, 'zst.out');
    const result = await writeArtifactToTarget({ source: `oci://${reg.host}/disks/zst:v1`, target: out, oci: client, runner, credentials: credentials(), platform: { architecture: 'amd64' } });
    assert.equal(sha256(await readFile(out)), sha256(image));
    assert.equal(result.compression, 'zstd');
    assert.equal(result.downloadedBytes, compressed.length);
    assert.equal(result.bytes, image.length);
    assert.equal(typeof result.phases.decompress, 'number');
  });

  test('index: the x86_64 (≡ amd64) entry is chosen; gzip found by magic bytes', async () => {
    const gz = gzipSync(image);
    const raw = await pushArtifact(reg, 'disks/multi', 'raw', { bytes: gz, title: 'disk.img' });
    const other = await pushArtifact(reg, 'disks/multi', 'arm', { bytes: Buffer.from('not for this platform'), title: 'arm.img' });
    await pushIndex(reg, 'disks/multi', 'v1', [
      { ...other, platform: { architecture: 'arm64', os: 'linux' }, annotations: { disktype: 'raw' } },
      { ...raw, platform: { architecture: 'x86_64', os: 'linux' }, annotations: { disktype: 'applehv' } },
    ]);
    const out = join(tmp.dir, 'multi.out');
    const result = await writeArtifactToTarget({ source: `oci://${reg.host}/disks/multi:v1`, target: out, oci: client, runner, credentials: credentials(), platform: { architecture: 'amd64' } });
    assert.equal(result.oci?.manifestDigest, raw.digest);
    assert.equal(result.compression, 'gzip');
    assert.equal(sha256(await readFile(out)), sha256(image));
  });

  test('podman-machine-os style: disktype qemu, .qcow2.zst → decompressed, converted to raw', async () => {
    const qcow2 = await toQcow2(tmp.dir, image);
    const pushed = await pushArtifact(reg, 'disks/pmo', 'qemu', { bytes: await zstdCompress(qcow2), title: 'machine.x86_64.qcow2.zst', mediaType: 'application/zstd' });
    await pushIndex(reg, 'disks/pmo', 'v1', [{ ...pushed, platform: { architecture: 'x86_64', os: 'linux' }, annotations: { disktype: 'qemu' } }]);
    const out = join(tmp.dir, 'pmo.raw');
    const result = await writeArtifactToTarget({ source: `oci://${reg.host}/disks/pmo:v1`, target: out, oci: client, runner, credentials: credentials(), platform: { architecture: 'amd64' }, tempDir: tmp.dir });
    assert.equal(result.compression, 'zstd');
    assert.equal(result.diskFormat, 'qcow2');
    assert.equal(result.bytes, image.length);
    assert.equal(sha256(await readFile(out)), sha256(image));
  });

  test('wrong credentials: REGISTRY_AUTH_FAILED, the file target is not created', async () => {
    await pushArtifact(reg, 'disks/auth', 'v1', { bytes: image, title: 'disk.raw' });
    const out = join(tmp.dir, 'auth.out');
    await assert.rejects(
      writeArtifactToTarget({ source: `oci://${reg.host}/disks/auth:v1`, target: out, oci: client, runner, credentials: { type: 'basic', username: 'testuser', password: 'nope' }, platform: { architecture: 'amd64' } }),
      (e: { code?: string }) => e.code === 'REGISTRY_AUTH_FAILED',
    );
    assert.equal(existsSync(out), false);
  });

  describe('to a real loop device', () => {
    const loop = suiteLoopDevice(() => tmp.dir, 32);

    test('gzip artifact: device holds the image, stale partitions replaced by the image\'s', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      // An old table with three partitions: the kernel must end up with the image's two.
      execFileSync('sgdisk', ['-n1:0:+4M', '-n2:0:+4M', '-n3:0:0', loop.device], { stdio: 'ignore' });
      execFileSync('partx', ['-a', '--', loop.device], { stdio: 'ignore' });
      assert.ok(existsSync(`${loop.device}p3`));
      await pushArtifact(reg, 'disks/gz', 'v1', { bytes: gzipSync(image), title: 'disk.raw.gz' });
      const result = await writeArtifactToTarget({ source: `oci://${reg.host}/disks/gz:v1`, target: loop.device, oci: client, runner, credentials: credentials(), platform: { architecture: 'amd64' } });
      assert.equal(result.target.kind, 'block');
      assert.equal(result.target.sizeBytes, 32 * 1024 * 1024);
      assert.equal(result.compression, 'gzip');
      assert.equal(sha256(await readHead(loop.device, image.length)), sha256(image));
      assert.ok(result.partitionsReread.includes('partx -a'), JSON.stringify(result.partitionsReread));
      assert.ok(existsSync(`${loop.device}p2`), 'partition 2 node after the re-read');
      assert.ok(!existsSync(`${loop.device}p3`), 'stale partition 3 removed');
    });
  });
});
