import assert from 'node:assert/strict';
import { access, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { findRegistryConfig, loadRegistriesConf, parseReference, parseRegistriesConf, pullSources } from '../../src/oci/index.ts';

test('registries.conf: TOML syntax errors are config errors naming the file and the line', () => {
  for (const [text, line] of [['[[registry]]\nlocation = "a"\nlocation = "b"', 3], ['\n[registry', 2], ['x = nope', 1]] as const) {
    assert.throws(() => parseRegistriesConf(text, '/etc/containers/registries.conf.d/50-x.conf'), (e: { code?: string; message: string; details?: Record<string, unknown> }) =>
      e.code === 'REGISTRY_CONFIG_INVALID'
        && e.message.startsWith(`/etc/containers/registries.conf.d/50-x.conf: line ${line}: `)
        && !e.message.includes('\n')
        && e.details?.['source'] === '/etc/containers/registries.conf.d/50-x.conf', text);
  }
});

test('registries.conf: the TOML podman reads (comments, quoted keys, inline tables, multi-line strings)', () => {
  const parsed = parseRegistriesConf(`
# comment
unqualified-search-registries = ["quay.io", 'docker.io',] # trailing
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
[[registry]]
prefix = """a.io"""
location = 'a.io'
mirror = [{ location = "m.a.io", insecure = true }]
`);
  assert.deepEqual(parsed.registries, [
    { prefix: 'a.io', location: 'a.io', insecure: false, blocked: false, mirrorByDigestOnly: false, mirrors: [{ location: 'm.a.io', insecure: true, pullFromMirror: 'all' }] },
  ]);
});

test('registries.conf: the files podman installed on this machine', async (t) => {
  const path = '/etc/containers/registries.conf';
  if (!await access(path).then(() => true, () => false)) {
    t.skip(`no ${path} here`);
    return;
  }
  const loaded = await loadRegistriesConf(path, '/etc/containers/registries.conf.d');
  assert.ok(Array.isArray(loaded.registries));
});

const conf = parseRegistriesConf(`
[[registry]]
prefix = "example.com/foo"
location = "internal.example/bar"
[[registry.mirror]]
location = "mirror-a.example/foo"
[[registry.mirror]]
location = "mirror-b.example:5000/foo"
insecure = true
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "mirror-c.example/foo"
pull-from-mirror = "tag-only"

[[registry]]
location = "example.com"
insecure = true

[[registry]]
prefix = "example.com/foo/blocked"
blocked = true

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "cache.corp.example:5000"

[[registry]]
location = "quay.io/mirrored"
mirror-by-digest-only = true
[[registry.mirror]]
location = "local.mirror/q"
`);

const D = `sha256:${'c'.repeat(64)}`;
const names = (ref: string): string[] => pullSources(conf, parseReference(ref)).map((s) => `${s.mirror ? 'm' : 'p'}:${s.registry}/${s.repository}${s.insecure ? ':insecure' : ''}`);

test('registries.conf: longest prefix wins and location rewrites the prefix', () => {
  assert.equal(findRegistryConfig(conf, 'example.com/foo/app:1')?.prefix, 'example.com/foo');
  assert.equal(findRegistryConfig(conf, 'example.com/foobar:1')?.prefix, 'example.com');
  assert.equal(findRegistryConfig(conf, 'example.com')?.insecure, true);
  assert.equal(findRegistryConfig(conf, 'other.com/x:1'), undefined);
  assert.deepEqual(names('oci://example.com/foo/app:1'), ['m:mirror-a.example/foo/app', 'm:mirror-c.example/foo/app', 'p:internal.example/bar/app']);
  assert.deepEqual(names(`oci://example.com/foo/app@${D}`), ['m:mirror-a.example/foo/app', 'm:mirror-b.example:5000/foo/app:insecure', 'p:internal.example/bar/app']);
  assert.deepEqual(names('oci://example.com/other:1'), ['p:example.com/other:insecure']);
  assert.deepEqual(names('oci://unknown.example/x:1'), ['p:unknown.example/x']);
});

test('registries.conf: mirror-by-digest-only and wildcard prefixes', () => {
  assert.deepEqual(names('oci://quay.io/mirrored/x:1'), ['p:quay.io/mirrored/x']);
  assert.deepEqual(names(`oci://quay.io/mirrored/x@${D}`), ['m:local.mirror/q/x', 'p:quay.io/mirrored/x']);
  assert.deepEqual(names('oci://a.b.corp.example/ns/img:1'), ['m:cache.corp.example:5000/ns/img', 'p:a.b.corp.example/ns/img']);
});

test('registries.conf: blocked prefixes refuse the pull', () => {
  assert.throws(() => pullSources(conf, parseReference('oci://example.com/foo/blocked/x:1')), (e: { code?: string }) => e.code === 'REGISTRY_BLOCKED');
});

test('registries.conf: invalid combinations are config errors', () => {
  for (const text of [
    '[[registry]]\nprefix = "*.x.com"\nlocation = "y.com"',
    '[[registry]]\nlocation = "a"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = "b"\npull-from-mirror = "tag-only"',
    '[[registry]]\ninsecure = "yes"\nlocation = "a"',
    '[[registry]]\nlocation = "a"\n[[registry.mirror]]\npull-from-mirror = "all"',
    'registry = [1979-05-27]',
  ]) {
    assert.throws(() => parseRegistriesConf(text), (e: { code?: string }) => e.code === 'REGISTRY_CONFIG_INVALID', text);
  }
});

test('registries.conf: v1 insecure/block lists', () => {
  const v1 = parseRegistriesConf('[registries.insecure]\nregistries = ["a.local:5000"]\n[registries.block]\nregistries = ["bad.io"]');
  assert.equal(findRegistryConfig(v1, 'a.local:5000/x:1')?.insecure, true);
  assert.throws(() => pullSources(v1, parseReference('oci://bad.io/x')), (e: { code?: string }) => e.code === 'REGISTRY_BLOCKED');
});

test('registries.conf: drop-ins are applied in order and replace by prefix', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regconf-'));
  try {
    await mkdir(join(dir, 'd'));
    await writeFile(join(dir, 'main.conf'), '[[registry]]\nlocation = "a.io"\n[[registry]]\nlocation = "b.io"\n');
    await writeFile(join(dir, 'd', '10-a.conf'), '[[registry]]\nlocation = "a.io"\ninsecure = true\n');
    await writeFile(join(dir, 'd', '20-a.conf'), '[[registry]]\nlocation = "a.io"\nblocked = true\n');
    await writeFile(join(dir, 'd', 'ignored.txt'), 'garbage = {');
    const loaded = await loadRegistriesConf(join(dir, 'main.conf'), join(dir, 'd'));
    assert.deepEqual(loaded.registries.map((r) => [r.prefix, r.insecure, r.blocked]), [['a.io', false, true], ['b.io', false, false]]);
    const missing = await loadRegistriesConf(join(dir, 'nope.conf'), join(dir, 'nope.d'));
    assert.deepEqual(missing, { registries: [] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
