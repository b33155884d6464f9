/**
 * `bootc-agent fetch oci://… --output-dir DIR` against a real registry (TLS + htpasswd): the
 * ramdisk published by scripts/publish-ramdisk fetched back per platform (bytes and digests
 * compared), JSON output, pull-secret shapes through --creds-env, a registries.conf mirror filled
 * with `skopeo copy --all`, unsafe or repeated titles refused with nothing written, and wrong
 * credentials without the secret in the output. One run goes through src/main.ts as a user runs it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { runFetchCli, type DirFetchResult } from '../../src/cli/index.ts';
import { publishRamdisk, type PublishResult } from '../../scripts/publish-ramdisk.ts';
import { skopeoCopyAll, writeAuthFile, writeFakeBuild, type FakeBuild } from '../helpers/ramdisk-build.ts';
import { registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { toolMissing } from '../helpers/tools.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const skip = registryUnavailable() ?? toolMissing('skopeo');
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const FILES = ['bootc-agent.kernel', 'bootc-agent.initramfs', 'SHA256SUMS', 'manifest.txt'];

interface Run { code: number; stdout: string; stderr: string }

async function fetchDir(args: string[], env: NodeJS.ProcessEnv, ociOptions: Parameters<typeof runFetchCli>[1]['ociOptions']): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const out = new Writable({ write(c, _e, cb) { stdout += String(c); cb(); } });
  const err = new Writable({ write(c, _e, cb) { stderr += String(c); cb(); } });
  const code = await runFetchCli(args, { stdout: out, stderr: err, env, ociOptions });
  return { code, stdout, stderr };
}

function pushRaw(reg: TestRegistry, repo: string, tag: string, layers: { bytes: Buffer; title: string }[]) {
  return (async () => {
    const empty = await reg.pushBlob(repo, Buffer.from('{}'));
    const descriptors = [];
    for (const l of layers) descriptors.push({ mediaType: 'application/octet-stream', ...await reg.pushBlob(repo, l.bytes), annotations: { 'org.opencontainers.image.title': l.title } });
    const manifest = JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.test.files.v1',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty, data: 'e30=' }, layers: descriptors,
    });
    return reg.pushManifest(repo, tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
  })();
}

describe('bootc-agent fetch --output-dir', { skip, concurrency: false }, () => {
  let reg: TestRegistry;
  let dir: string;
  let authFile: string;
  let builds: { amd64: FakeBuild; arm64: FakeBuild };
  let published: PublishResult;
  let ociOptions: { registries: { registries: never[] }; policy: null };
  let common: string[];

  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
    dir = await mkdtemp(join(tmpdir(), 'fetch-artifacts-'));
    authFile = await writeAuthFile(join(dir, 'auth.json'), reg);
    builds = { amd64: await writeFakeBuild(join(dir, 'build-amd64'), 'amd64'), arm64: await writeFakeBuild(join(dir, 'build-arm64'), 'arm64', { initramfs: 2 * 1024 * 1024 + 5 }) };
    published = await publishRamdisk({
      target: `oci://${reg.host}/ipa/ramdisk:v1`, dirs: { amd64: builds.amd64.dir, arm64: builds.arm64.dir },
      client: { registries: { registries: [] }, policy: null, authFilePaths: [authFile], certsDirs: [reg.certsDir] },
    });
    ociOptions = { registries: { registries: [] }, policy: null };
    common = ['--authfile', authFile, '--cert-dir', reg.certsDir];
  });
  after(async () => {
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('every file of the platform\'s artifact, under its title, verified; JSON names files, manifest and platform', async () => {
    for (const arch of ['arm64', 'amd64'] as const) {
      const out = join(dir, `out-${arch}`);
      const r = await fetchDir([`oci://${reg.host}/ipa/ramdisk:v1`, '--platform', `linux/${arch}`, '--output-dir', out, '--json', ...common], {}, ociOptions);
      assert.equal(r.code, 0, r.stderr);
      const result = JSON.parse(r.stdout) as DirFetchResult;
      assert.equal(result.platform, `linux/${arch}`);
      assert.equal(result.manifestDigest, published.arches[arch]!.bundle.split('@')[1]);
      assert.equal(result.resolvedDigest, published.tags.bundle.digest);
      assert.equal(result.artifactType, 'application/vnd.bootc-agent.ramdisk.v1', 'from the manifest');
      assert.deepEqual(result.files.map((f) => f.path), FILES.map((n) => join(out, n)));
      for (const f of result.files) {
        const name = f.path.slice(out.length + 1);
        const bytes = await readFile(f.path);
        assert.deepEqual(bytes, builds[arch].files[name], name);
        assert.equal(f.digest, sha256(bytes));
        assert.equal(f.size, bytes.length);
        assert.equal(f.mediaType, name.startsWith('bootc-agent') ? 'application/octet-stream' : 'text/plain');
      }
      assert.deepEqual((await readdir(out)).sort(), [...FILES].sort(), 'no temporary file left');
      assert.match(r.stderr, /bootc-agent\.initramfs: \d+ bytes\n/);
    }
  });

  test('a per-file tag gives that one file; a digest-pinned URL (what Ironic gets) works too', async () => {
    const out = join(dir, 'kernel-only');
    const r = await fetchDir([`oci://${reg.host}/ipa/ramdisk:v1-kernel`, '--platform', 'linux/aarch64', '-d', out, ...common], {}, ociOptions);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readdir(out), ['bootc-agent.kernel']);
    assert.deepEqual(await readFile(join(out, 'bootc-agent.kernel')), builds.arm64.files['bootc-agent.kernel']);
    assert.match(r.stdout, /wrote 1 file\(s\) of oci:\/\/.*\(linux\/arm64\)/);
    const pinned = join(dir, 'pinned');
    const p = await fetchDir([published.arches.amd64!.deployRamdisk, '--output-dir', pinned, ...common], {}, ociOptions);
    assert.equal(p.code, 0, p.stderr);
    assert.deepEqual(await readFile(join(pinned, 'bootc-agent.initramfs')), builds.amd64.files['bootc-agent.initramfs']);
  });

  test('pull-secret shapes through --creds-env (base64 auth, docker config JSON); wrong ones exit 3 without the secret', async () => {
    const b64 = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
    const shapes = [b64, JSON.stringify({ auths: { [reg.host]: { auth: b64 } } }), `${reg.username}:${reg.password}`];
    for (const [i, secret] of shapes.entries()) {
      const out = join(dir, `secret-${i}`);
      const r = await fetchDir([`oci://${reg.host}/ipa/ramdisk:v1-initramfs`, '--platform', 'linux/amd64', '-d', out, '--creds-env', 'PULL_SECRET', '--cert-dir', reg.certsDir],
        { PULL_SECRET: secret, REGISTRY_AUTH_FILE: join(dir, 'missing.json') }, { ...ociOptions, authFilePaths: [] });
      assert.equal(r.code, 0, `${i}: ${r.stderr}`);
      assert.deepEqual(await readdir(out), ['bootc-agent.initramfs']);
    }
    const wrong = 'N0t-The-Password-42';
    const out = join(dir, 'denied');
    const r = await fetchDir([`oci://${reg.host}/ipa/ramdisk:v1`, '-d', out, '--creds-env', 'PULL_SECRET', '--cert-dir', reg.certsDir, '--json'],
      { PULL_SECRET: `${reg.username}:${wrong}` }, { ...ociOptions, authFilePaths: [] });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /\[REGISTRY_AUTH_FAILED\]/);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(wrong));
    await assert.rejects(readdir(out), { code: 'ENOENT' }, 'nothing created before the registry answered');
  });

  test('through a registries.conf mirror filled by skopeo copy --all (the origin has nothing)', async () => {
    await skopeoCopyAll(reg, authFile, `${reg.host}/ipa/ramdisk:v1`, `${reg.host}/disconnected/ramdisk:v1`);
    const registries = { registries: [{ prefix: 'quay.example.invalid/ipa', location: 'quay.example.invalid/ipa', insecure: false, blocked: false, mirrorByDigestOnly: false,
      mirrors: [{ location: `${reg.host}/disconnected`, insecure: false, pullFromMirror: 'all' as const }] }] };
    const out = join(dir, 'mirrored');
    const r = await fetchDir(['oci://quay.example.invalid/ipa/ramdisk:v1', '--platform', 'linux/arm64', '-d', out, '--json', ...common], {}, { ...ociOptions, registries });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as DirFetchResult;
    assert.equal(result.source, `${reg.host}/disconnected/ramdisk`);
    assert.equal(result.manifestDigest, published.arches.arm64!.bundle.split('@')[1], 'skopeo copy --all kept the manifest (what Ironic pins)');
    for (const name of FILES) assert.deepEqual(await readFile(join(out, name)), builds.arm64.files[name], name);
  });

  test('unsafe or repeated titles are refused (exit 6) before anything is written', async () => {
    const cases: [string, { bytes: Buffer; title: string }[], RegExp][] = [
      ['traversal', [{ bytes: randomBytes(10), title: '../evil' }], /contains a path separator/],
      ['absolute', [{ bytes: randomBytes(10), title: '/etc/passwd' }], /contains a path separator/],
      ['dotdot', [{ bytes: randomBytes(10), title: '..' }], /hidden or a parent-directory name/],
      ['hidden', [{ bytes: randomBytes(10), title: '.bashrc' }], /hidden/],
      ['control', [{ bytes: randomBytes(10), title: 'a\nb' }], /control or bidirectional-override/],
      ['bidi', [{ bytes: randomBytes(10), title: 'kernel\u202Egpj.exe' }], /control or bidirectional-override/],
      ['duplicate', [{ bytes: randomBytes(10), title: 'same' }, { bytes: randomBytes(11), title: 'same' }], /two layers have the title "same"/],
      ['untitled', [{ bytes: randomBytes(10), title: '' }], /has no org\.opencontainers\.image\.title/],
    ];
    for (const [tag, layers, message] of cases) {
      await pushRaw(reg, 'bad/titles', tag, layers);
      const out = join(dir, `bad-${tag}`);
      await mkdir(out);
      const r = await fetchDir([`oci://${reg.host}/bad/titles:${tag}`, '-d', out, ...common], {}, ociOptions);
      assert.equal(r.code, 6, `${tag}: ${r.stderr}`);
      assert.match(r.stderr, /\[OCI_ARTIFACT_INVALID\]/);
      assert.match(r.stderr, message, tag);
      assert.deepEqual(await readdir(out), [], tag);
    }
  });

  test('usage: --output and --output-dir exclude each other; --output-dir needs oci://', async () => {
    const both = await fetchDir([`oci://${reg.host}/ipa/ramdisk:v1`, '-o', join(dir, 'x'), '-d', join(dir, 'y')], {}, ociOptions);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--output and --output-dir exclude each other/);
    const http = await fetchDir(['https://example.invalid/x', '-d', join(dir, 'y')], {}, ociOptions);
    assert.equal(http.code, 2);
    assert.match(http.stderr, /--output-dir needs an oci:\/\/ SOURCE/);
  });

  test('as a user runs it: bootc-agent fetch through src/main.ts, plain progress lines on stderr', async () => {
    const out = join(dir, 'main');
    const r = await new Promise<Run>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'fetch', `oci://${reg.host}/ipa/ramdisk:v1`, '--platform', 'linux/arm64', '-d', out, ...common, '--progress-interval', '0'], {
        cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += String(c); });
      child.stderr.on('data', (c: Buffer) => { stderr += String(c); });
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.once('error', reject);
      child.once('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^fetching oci:\/\/.* → .*main\n/m);
    assert.match(r.stderr, /downloaded [\d.]+\/[\d.]+ MiB \(100%\)/);
    assert.match(r.stdout, /wrote 4 file\(s\)/);
    assert.deepEqual(await readFile(join(out, 'bootc-agent.initramfs')), builds.arm64.files['bootc-agent.initramfs']);
  });
});
