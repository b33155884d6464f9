/**
 * What publish-ramdisk pushes, read by Ironic's own OCI image service (`OciImageService` from
 * ironic/common/image_service.py): by tag and node `cpu_arch` it must choose the right file of the
 * right architecture and name the manifest publish-ramdisk printed; on a printed URL, `show()` must
 * say artifact and `download()` must give the file's bytes. Debian's python3-ironic (21.4) has no
 * OCI image service, so this runs against an Ironic source tree named by IRONIC_SRC (e.g. a clone of
 * openstack/ironic, 2025.1 or later) with Debian's Python libraries, and skips without it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { publishRamdisk, type PublishResult } from '../../scripts/publish-ramdisk.ts';
import { writeFakeBuild, type FakeBuild } from '../helpers/ramdisk-build.ts';
import { registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';

const PYTHON = '/usr/bin/python3';
const IRONIC_SRC = process.env['IRONIC_SRC'];

function skipReason(): string | undefined {
  if (!IRONIC_SRC) return 'set IRONIC_SRC to an Ironic source tree with ironic/common/oci_registry.py to run Ironic\'s OCI image service';
  if (!existsSync(join(IRONIC_SRC, 'ironic/common/oci_registry.py'))) return `${IRONIC_SRC} has no ironic/common/oci_registry.py (Ironic before OCI support)`;
  if (!existsSync(PYTHON)) return `${PYTHON} missing`;
  return registryUnavailable();
}

// Ironic's kernel_parameters module needs `lark`, which Debian 12 does not package; the image
// service never calls it, so an empty stand-in is enough to import the package.
const SCRIPT = `
import sys, json, hashlib, io, types
lark = types.ModuleType('lark')
class _Any:
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return self
    def __getattr__(self, n): return _Any()
for n in ['Lark', 'Transformer', 'Token', 'Tree', 'Discard', 'UnexpectedInput', 'LarkError', 'Visitor']:
    setattr(lark, n, _Any)
lark.v_args = lambda *a, **k: (lambda f: f)
sys.modules['lark'] = lark
sys.modules['lark.exceptions'] = lark
from ironic.conf import CONF
from ironic.common import image_service
spec = json.load(sys.stdin)
CONF([], project='ironic')
CONF.set_override('verify_ca', spec['ca'], group='oci')
out = {'tags': {}, 'pinned': {}}
for arch in ['x86_64', 'aarch64']:
    for part in ['kernel', 'initramfs']:
        r = image_service.OciImageService().identify_specific_image(spec['base'] + ':' + spec['tag'] + '-' + part, cpu_arch=arch)
        out['tags'][arch + '-' + part] = {k: r.get(k) for k in ['image_filename', 'oci_image_manifest_url', 'image_size', 'image_disk_format']}
for name, url in spec['pinned'].items():
    svc = image_service.OciImageService()
    shown = svc.show(url)
    buf = io.BytesIO()
    svc.download(url, buf)
    out['pinned'][name] = {'image_type': shown.get('image_type'), 'size': shown.get('size'), 'sha256': hashlib.sha256(buf.getvalue()).hexdigest()}
print(json.dumps(out))
`;

function runIronic(spec: unknown): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, ['-c', SCRIPT], { env: { PYTHONPATH: IRONIC_SRC!, PATH: '/usr/bin:/bin' }, timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Record<string, Record<string, Record<string, unknown>>>);
    });
    child.stdin!.end(JSON.stringify(spec));
  });
}

describe('Ironic\'s OCI image service reads what publish-ramdisk pushes', { skip: skipReason() }, () => {
  let reg: TestRegistry;
  let dir: string;
  let builds: Record<'amd64' | 'arm64', FakeBuild>;
  let published: PublishResult;

  before(async () => {
    reg = await startRegistry({ auth: 'none' });
    dir = await mkdtemp(join(tmpdir(), 'push-ironic-'));
    builds = { amd64: await writeFakeBuild(join(dir, 'amd64'), 'amd64'), arm64: await writeFakeBuild(join(dir, 'arm64'), 'arm64', { kernel: 50_000 }) };
    published = await publishRamdisk({
      target: `oci://${reg.host}/ipa/ramdisk:v1`, dirs: { amd64: builds.amd64.dir, arm64: builds.arm64.dir },
      client: { registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [reg.certsDir] },
    });
  });
  after(async () => {
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('by tag and cpu_arch: the right file, its title, the URL publish-ramdisk printed; pinned: artifact, the same bytes', async () => {
    const out = await runIronic({
      ca: reg.cert.certPath, base: `oci://${reg.host}/ipa/ramdisk`, tag: 'v1',
      pinned: { 'amd64-kernel': published.arches.amd64!.deployKernel, 'arm64-ramdisk': published.arches.arm64!.deployRamdisk },
    });
    for (const [cpuArch, arch] of [['x86_64', 'amd64'], ['aarch64', 'arm64']] as const) {
      for (const [part, file, key] of [['kernel', 'bootc-agent.kernel', 'deployKernel'], ['initramfs', 'bootc-agent.initramfs', 'deployRamdisk']] as const) {
        const chosen = out['tags']![`${cpuArch}-${part}`]!;
        assert.equal(chosen['image_filename'], file);
        assert.equal(chosen['oci_image_manifest_url'], published.arches[arch]![key]);
        assert.equal(chosen['image_size'], builds[arch].files[file]!.length);
        assert.notEqual(chosen['image_disk_format'], 'bootc');
      }
    }
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.deepEqual(out['pinned']!['amd64-kernel'], { image_type: 'artifact', size: builds.amd64.files['bootc-agent.kernel']!.length, sha256: sha(builds.amd64.files['bootc-agent.kernel']!) });
    assert.deepEqual(out['pinned']!['arm64-ramdisk'], { image_type: 'artifact', size: builds.arm64.files['bootc-agent.initramfs']!.length, sha256: sha(builds.arm64.files['bootc-agent.initramfs']!) });
  });
});
