/**
 * podman (4.3 here) pulling through registry mirrors the agent configured: a drop-in written by
 * writeMirrorsDropIn in a registries.conf.d that is not the default one, and a node's mirrors,
 * reach podman through preparePodmanRegistries' private HOME; the mirror (a real registry behind
 * a TCP proxy) serves the layers; a mirror that is down, or dies mid-blob, leaves the pull to the
 * origin and the pull still succeeds. Real docker-registry instances on loopback, a private
 * podman store; the host's /etc/containers/registries.conf.d is never written.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pullImage, type PodmanDeps } from '../../src/bootc/podman.ts';
import { storeArgs, type ContainerStore } from '../../src/bootc/podman-args.ts';
import { parseRegistryMirrors } from '../../src/config/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { loadRegistriesConf, parseRegistriesConf, pullSources, parseReference } from '../../src/oci/index.ts';
import { preparePodmanRegistries, writeMirrorsDropIn } from '../../src/oci/mirrors.ts';
import { registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { toolMissing } from '../helpers/tools.ts';

const LAYER_BYTES = 8 * 1024 * 1024;
const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (podman pull into a private store)';
  return toolMissing('podman', 'tar') ?? registryUnavailable();
}

/** A one-layer image podman accepts (diff_ids right), with an incompressible file. */
async function buildImage(dir: string): Promise<{ config: Buffer; layer: Buffer }> {
  const root = join(dir, 'rootfs');
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'payload.bin'), randomBytes(LAYER_BYTES));
  const tar = execFileSync('tar', ['-C', root, '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 64 * 1024 * 1024 });
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256(tar)] } }));
  return { config, layer: gzipSync(tar, { level: 1 }) };
}

async function pushTo(reg: TestRegistry, repo: string, image: { config: Buffer; layer: Buffer }): Promise<string> {
  const config = await reg.pushBlob(repo, image.config);
  const layer = await reg.pushBlob(repo, image.layer);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
  });
  return (await reg.pushManifest(repo, 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json')).digest;
}

describe('podman pulls through the mirrors the agent configured', { skip: skipReason() }, () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let dir: string;
  let digest: string;
  let imageRef: string;
  const cleanups: (() => Promise<unknown>)[] = [];
  const runner = createExecaRunner();
  const log = createSilentLogger();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mirrors-pull-'));
    [origin, mirror] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' })]);
    cleanups.push(() => origin.stop(), () => mirror.stop());
    const image = await buildImage(dir);
    digest = await pushTo(origin, 'fleet/os', image);
    assert.equal(await pushTo(mirror, 'fleet/os', image), digest);
    imageRef = `${origin.host}/fleet/os@${digest}`;
    cleanups.push(await origin.installCaForPodman());
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  // One private podman store per pull: each starts empty, so every layer is fetched.
  async function freshStore(name: string): Promise<ContainerStore> {
    const base = join(dir, name);
    const store = { containersDir: join(base, 'containers'), runDir: join(base, 'run'), tmpDir: join(base, 'tmp') };
    for (const d of Object.values(store)) await mkdir(d, { recursive: true });
    cleanups.push(async () => {
      await runner.run('podman', [...storeArgs(store), 'rmi', '--all', '--force'], { timeoutMs: 60_000 }).catch(() => undefined);
      await runner.run('umount', ['-R', join(store.containersDir, 'storage', 'overlay')], { timeoutMs: 10_000 }).catch(() => undefined);
    });
    return store;
  }

  async function pull(name: string, env: Record<string, string>, retryDelayMs = 200) {
    const store = await freshStore(name);
    const deps: PodmanDeps = { runner, log, secretsDir: join(dir, 'secrets'), retryDelayMs, store };
    const result = await pullImage(deps, {
      imageRef, authJson: undefined, layers: [], signal: AbortSignal.timeout(300_000), onProgress: () => {}, registriesEnv: env,
    });
    const { stdout } = await runner.run('podman', [...storeArgs(store), 'image', 'inspect', '--format', '{{.Digest}}', imageRef]);
    assert.equal(stdout.trim(), digest, 'podman holds the image by its digest');
    return result;
  }

  test('a boot-time drop-in in a non-default directory: our parser reads it, podman pulls from the mirror', async () => {
    const proxy = await startTcpProxy(mirror.host);
    cleanups.push(() => proxy.close());
    const confDir = join(dir, 'registries.conf.d');
    const mirrors = parseRegistryMirrors(`${origin.host}=${proxy.host};insecure;digest-only`);
    const written = await writeMirrorsDropIn({ dir: confDir, fileName: '99-test.conf', certsDir: join(dir, 'certs.d'), registriesConfPath: join(dir, 'none.conf') }, mirrors, 'test');
    assert.ok(written);
    const conf = await loadRegistriesConf(join(dir, 'none.conf'), confDir);
    assert.deepEqual(pullSources(conf, parseReference(`oci://${imageRef}`)).map((s) => [s.registry, s.mirror, s.insecure]), [
      [proxy.host, true, true], [origin.host, false, false],
    ]);
    const prepared = await preparePodmanRegistries({ base: conf, mirrors: [], confDir, confDirIsDefault: false, parentDir: join(dir, 'state') });
    try {
      assert.ok(prepared.env['HOME']);
      const result = await pull('dropin', prepared.env);
      assert.equal(result.attempts, 1);
      assert.ok(proxy.served() > LAYER_BYTES, `the mirror served the layer (${proxy.served()} bytes)`);
    } finally {
      await prepared.dispose();
    }
    assert.deepEqual(await readdir(join(dir, 'state')), [], 'the private registries directory is removed');
  });

  test('a node\'s mirrors (private conf for one command) reach podman; a mirror that is down leaves the pull to the origin', async () => {
    const dead = await startTcpProxy(mirror.host);
    await dead.close();
    const live = await startTcpProxy(mirror.host);
    cleanups.push(() => live.close());
    const mirrors = parseRegistryMirrors(`${origin.host}=${dead.host};insecure`, 'bootc_registry_mirrors');
    const prepared = await preparePodmanRegistries({ base: { registries: [] }, mirrors, confDir: '/etc/containers/registries.conf.d', confDirIsDefault: true, parentDir: join(dir, 'state') });
    try {
      const dropIns = join(prepared.env['HOME']!, '.config', 'containers', 'registries.conf.d');
      assert.deepEqual(await readdir(dropIns), ['90-node-mirrors.conf']);
      // The file podman reads is the overlay our client applies.
      assert.deepEqual(parseRegistriesConf(await readFile(join(dropIns, '90-node-mirrors.conf'), 'utf8')), prepared.overlay);
      const result = await pull('down', prepared.env);
      assert.equal(result.attempts, 1, 'containers/image skips a mirror it cannot connect to');
    } finally {
      await prepared.dispose();
    }
  });

  test('a mirror that dies mid-blob: the pull is retried and the origin serves it', async () => {
    const proxy = await startTcpProxy(mirror.host, { dieAfter: 3 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const mirrors = parseRegistryMirrors(`${origin.host}=${proxy.host};insecure`, 'bootc_registry_mirrors');
    const prepared = await preparePodmanRegistries({ base: { registries: [] }, mirrors, confDir: '/etc/containers/registries.conf.d', confDirIsDefault: true, parentDir: join(dir, 'state') });
    try {
      const result = await pull('mid-blob', prepared.env);
      assert.ok(proxy.dead(), 'the mirror died during the pull');
      assert.ok(result.attempts >= 1);
    } finally {
      await prepared.dispose();
    }
  });
});
