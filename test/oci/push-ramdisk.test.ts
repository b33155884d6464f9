/**
 * scripts/publish-ramdisk against a real registry (TLS + htpasswd): the layout read back with
 * skopeo (media types, empty config, artifactType, titles, platforms per tag), the digests the
 * same when the same files are published again, SOURCE_DATE_EPOCH as the only timestamp, the
 * command line's JSON and exit codes, and a build whose SHA256SUMS disagrees refused.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { isAgentError } from '../../src/errors.ts';
import { ARTIFACT_TYPES, main, publishRamdisk, type PublishOptions, type PublishResult } from '../../scripts/publish-ramdisk.ts';
import { skopeoRaw, writeAuthFile, writeFakeBuild, type FakeBuild } from '../helpers/ramdisk-build.ts';
import { registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { toolMissing } from '../helpers/tools.ts';

const skip = registryUnavailable() ?? toolMissing('skopeo');
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Descriptor { mediaType: string; digest: string; size: number; artifactType?: string; platform?: { architecture: string; os: string }; annotations?: Record<string, string> }
interface Doc { mediaType: string; artifactType?: string; config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[]; annotations?: Record<string, string> }

function sink(): { stream: Writable; text(): string } {
  let text = '';
  return { stream: new Writable({ write(c, _e, cb) { text += String(c); cb(); } }), text: () => text };
}

describe('publish-ramdisk to a real registry', { skip }, () => {
  let reg: TestRegistry;
  let dir: string;
  let authFile: string;
  let amd64: FakeBuild;
  let arm64: FakeBuild;
  let first: PublishResult;
  let base: PublishOptions;

  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
    dir = await mkdtemp(join(tmpdir(), 'publish-ramdisk-'));
    authFile = await writeAuthFile(join(dir, 'auth.json'), reg);
    amd64 = await writeFakeBuild(join(dir, 'ramdisk'), 'amd64');
    arm64 = await writeFakeBuild(join(dir, 'ramdisk-arm64'), 'arm64', { kernel: 80 * 1024, initramfs: 700 * 1024 });
    base = {
      target: `oci://${reg.host}/metal3/ramdisk:1.0`,
      dirs: { amd64: amd64.dir, arm64: arm64.dir },
      client: { registries: { registries: [] }, policy: null, authFilePaths: [authFile], certsDirs: [reg.certsDir] },
      chunkSize: 256 * 1024,
    };
    first = await publishRamdisk(base);
  });
  after(async () => {
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('TAG-kernel and TAG-initramfs: an index over both architectures, one titled file per manifest, as skopeo reads them', async () => {
    for (const [part, file] of [['kernel', 'bootc-agent.kernel'], ['initramfs', 'bootc-agent.initramfs']] as const) {
      const index = (await skopeoRaw(reg, authFile, `${reg.host}/metal3/ramdisk:1.0-${part}`)).json as unknown as Doc;
      assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
      assert.deepEqual(index.manifests!.map((m) => [m.mediaType, m.platform, m.artifactType]), [
        ['application/vnd.oci.image.manifest.v1+json', { architecture: 'amd64', os: 'linux' }, ARTIFACT_TYPES[part]],
        ['application/vnd.oci.image.manifest.v1+json', { architecture: 'arm64', os: 'linux' }, ARTIFACT_TYPES[part]],
      ]);
      for (const [i, build] of [amd64, arm64].entries()) {
        const entry = index.manifests![i]!;
        const { raw, json } = await skopeoRaw(reg, authFile, `${reg.host}/metal3/ramdisk@${entry.digest}`);
        assert.equal(sha256(raw), entry.digest);
        const m = json as unknown as Doc;
        assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
        assert.equal(m.artifactType, ARTIFACT_TYPES[part]);
        assert.deepEqual(m.config, { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2, data: 'e30=' });
        assert.deepEqual(m.layers, [{
          mediaType: 'application/octet-stream', digest: sha256(build.files[file]!), size: build.files[file]!.length,
          annotations: { 'org.opencontainers.image.title': file },
        }]);
        assert.equal(m.annotations, undefined, 'no timestamp without SOURCE_DATE_EPOCH');
        const arch = i === 0 ? 'amd64' : 'arm64';
        const url = part === 'kernel' ? first.arches[arch]!.deployKernel : first.arches[arch]!.deployRamdisk;
        assert.equal(url, `oci://${reg.host}/metal3/ramdisk@${entry.digest}`);
      }
    }
  });

  test('TAG: every file of the build per architecture, in one manifest', async () => {
    const index = (await skopeoRaw(reg, authFile, `${reg.host}/metal3/ramdisk:1.0`)).json as unknown as Doc;
    assert.deepEqual(index.manifests!.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
    const arm = (await skopeoRaw(reg, authFile, `${reg.host}/metal3/ramdisk@${index.manifests![1]!.digest}`)).json as unknown as Doc;
    assert.deepEqual(arm.layers!.map((l) => [l.annotations!['org.opencontainers.image.title'], l.digest]),
      ['bootc-agent.kernel', 'bootc-agent.initramfs', 'SHA256SUMS', 'manifest.txt'].map((n) => [n, sha256(arm64.files[n]!)]));
    assert.equal(first.arches.arm64!.bundle, `oci://${reg.host}/metal3/ramdisk@${index.manifests![1]!.digest}`);
    assert.equal(first.conductor.deploy_kernel_by_arch, `x86_64:${first.arches.amd64!.deployKernel},aarch64:${first.arches.arm64!.deployKernel}`);
  });

  test('the same files published again give the same digests, and nothing is uploaded twice', async () => {
    const again = await publishRamdisk(base);
    assert.deepEqual(again.tags, first.tags);
    assert.deepEqual(Object.values(again.arches).flatMap((a) => Object.values(a.files).map((f) => f.outcome)), Array(8).fill('exists'));
    assert.equal(again.arches.amd64!.deployRamdisk, first.arches.amd64!.deployRamdisk);
    const copy = await publishRamdisk({ ...base, target: `oci://${reg.host}/mirror/ramdisk:1.0`, mountFrom: 'metal3/ramdisk' });
    assert.deepEqual(Object.values(copy.arches).flatMap((a) => Object.values(a.files).map((f) => f.outcome)), Array(8).fill('mounted'));
    assert.equal(copy.tags.kernel.digest, first.tags.kernel.digest);
  });

  test('SOURCE_DATE_EPOCH is the only timestamp: org.opencontainers.image.created, reproducible', async () => {
    const one = await publishRamdisk({ ...base, target: `oci://${reg.host}/metal3/ramdisk:dated`, sourceDateEpoch: '1700000000' });
    const two = await publishRamdisk({ ...base, target: `oci://${reg.host}/metal3/ramdisk:dated`, sourceDateEpoch: '1700000000' });
    assert.deepEqual(two.tags, one.tags);
    assert.notEqual(one.arches.amd64!.deployKernel, first.arches.amd64!.deployKernel);
    const digest = one.arches.amd64!.deployKernel.split('@')[1]!;
    const m = (await skopeoRaw(reg, authFile, `${reg.host}/metal3/ramdisk@${digest}`)).json as unknown as Doc;
    assert.deepEqual(m.annotations, { 'org.opencontainers.image.created': '2023-11-14T22:13:20Z' });
  });

  test('one architecture alone; a build whose SHA256SUMS disagrees is refused before any push', async () => {
    const only = await publishRamdisk({ ...base, target: `oci://${reg.host}/metal3/arm-only:1`, dirs: { arm64: arm64.dir } });
    assert.deepEqual(Object.keys(only.arches), ['arm64']);
    const index = (await skopeoRaw(reg, authFile, `${reg.host}/metal3/arm-only:1-kernel`)).json as unknown as Doc;
    assert.deepEqual(index.manifests!.map((m) => m.platform?.architecture), ['arm64']);

    const torn = await writeFakeBuild(join(dir, 'torn'), 'amd64');
    await writeFile(join(torn.dir, 'bootc-agent.initramfs'), Buffer.from('truncated'));
    await assert.rejects(publishRamdisk({ ...base, target: `oci://${reg.host}/metal3/torn:1`, dirs: { amd64: torn.dir } }),
      (e: unknown) => isAgentError(e) && e.code === 'OCI_ARTIFACT_INVALID' && /bootc-agent\.initramfs does not match its line in SHA256SUMS/.test(e.message));
  });

  test('the command line: --json, --creds-env with a pull secret, --cert-dir, progress, --insecure; wrong credentials exit 1 without the secret', async () => {
    const out = sink();
    const err = sink();
    const secret = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
    const code = await main([`oci://${reg.host}/cli/ramdisk:2`, '--amd64', amd64.dir, '--creds-env', 'RAMDISK_PUSH', '--cert-dir', reg.certsDir, '--chunk-size', '0.1', '--json'],
      { stdout: out.stream, stderr: err.stream, env: { RAMDISK_PUSH: secret, REGISTRY_AUTH_FILE: join(dir, 'none.json') } });
    assert.equal(code, 0, err.text());
    const result = JSON.parse(out.text()) as PublishResult;
    assert.equal(result.arches.amd64!.deployKernel, `oci://${reg.host}/cli/ramdisk@${first.arches.amd64!.deployKernel.split('@')[1]}`);
    assert.match(err.text(), /amd64 bootc-agent\.initramfs: \d+ bytes sha256:[0-9a-f]{64} \(uploaded\)/);
    assert.match(err.text(), /amd64 bootc-agent\.initramfs: 0\.1\/0\.3 MiB sent\n/, 'progress per chunk');

    const insecure = sink();
    const insecureErr = sink();
    const code1 = await main([`oci://${reg.host}/cli/insecure:1`, '--amd64', amd64.dir, '--authfile', authFile, '--insecure', '--json'],
      { stdout: insecure.stream, stderr: insecureErr.stream, env: { REGISTRY_AUTH_FILE: join(dir, 'none.json') } });
    assert.equal(code1, 0, `--insecure: a self-signed registry without --cert-dir: ${insecureErr.text()}`);
    assert.equal((JSON.parse(insecure.text()) as PublishResult).arches.amd64!.deployKernel.split('@')[1], first.arches.amd64!.deployKernel.split('@')[1]);

    const wrong = 'Wr0ng-Passw0rd-For-Test';
    const out2 = sink();
    const err2 = sink();
    const code2 = await main([`oci://${reg.host}/cli/ramdisk:3`, '--amd64', amd64.dir, '--creds-env', 'RAMDISK_PUSH', '--cert-dir', reg.certsDir],
      { stdout: out2.stream, stderr: err2.stream, env: { RAMDISK_PUSH: `${reg.username}:${wrong}`, REGISTRY_AUTH_FILE: join(dir, 'none.json') } });
    assert.equal(code2, 1);
    assert.match(err2.text(), /\[REGISTRY_AUTH_FAILED\]/);
    assert.ok(!err2.text().includes(wrong) && !out2.text().includes(wrong));

    const err3 = sink();
    assert.equal(await main(['oci://h/r@sha256:' + '0'.repeat(64), '--bogus'], { stdout: sink().stream, stderr: err3.stream, env: {} }), 2);
    assert.match(err3.text(), /Unknown option '--bogus'/);
  });
});
