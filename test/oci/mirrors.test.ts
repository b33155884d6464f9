/**
 * Mirrors as registries.conf: the entries the option and a node's list turn into, rendered as
 * TOML that our parser (the same semantics podman applies) reads back identically; a node's
 * entries applied over the agent's as a later drop-in; the per-node forms of instance_info and
 * what the bootc and write_image request parsers make of them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseBootcDeployRequest } from '../../src/bootc/request.ts';
import { parseNodeRegistryMirrors, parseRegistryMirrors } from '../../src/config/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { parseWriteImageRequest } from '../../src/image/request.ts';
import { parseReference, parseRegistriesConf, pullSources } from '../../src/oci/index.ts';
import { mirrorsRegistriesConf, preparePodmanRegistries, renderRegistriesConf, withOverlay } from '../../src/oci/mirrors.ts';

const DIGEST = `sha256:${'b'.repeat(64)}`;
const sourcesOf = (conf: ReturnType<typeof parseRegistriesConf>, ref: string) =>
  pullSources(conf, parseReference(ref)).map((s) => `${s.registry}/${s.repository}${s.mirror ? ' m' : ''}${s.insecure ? ' i' : ''}`);

describe('mirrors as registries.conf', () => {
  const mirrors = parseRegistryMirrors('quay.io/org=cache:5000/quay-org;digest-only,quay.io/org=peer.local;tag-only;insecure,registry.local:5000=cache:5000/local');

  test('rendered TOML reads back as the same entries, and the sources come in the order given', () => {
    const conf = mirrorsRegistriesConf(mirrors);
    const text = renderRegistriesConf(conf, 'header line one\nline two');
    assert.match(text, /^# header line one\n# line two\n/);
    assert.deepEqual(parseRegistriesConf(text), conf);
    assert.deepEqual(sourcesOf(conf, `oci://quay.io/org/os@${DIGEST}`), ['cache:5000/quay-org/os m', 'quay.io/org/os']);
    assert.deepEqual(sourcesOf(conf, 'oci://quay.io/org/os:42'), ['peer.local/os m i', 'quay.io/org/os']);
    assert.deepEqual(sourcesOf(conf, 'oci://quay.io/other/os:42'), ['quay.io/other/os']);
    assert.deepEqual(sourcesOf(conf, 'oci://registry.local:5000/a/b:1'), ['cache:5000/local/a/b m', 'registry.local:5000/a/b']);
  });

  test('a prefix the other files know keeps its location, insecure and blocked', () => {
    const base = parseRegistriesConf('[[registry]]\nprefix = "quay.io/org"\nlocation = "internal.quay/org"\ninsecure = true\n');
    const conf = mirrorsRegistriesConf(mirrors.slice(0, 1), base);
    assert.deepEqual(conf.registries[0], {
      prefix: 'quay.io/org', location: 'internal.quay/org', insecure: true, blocked: false, mirrorByDigestOnly: false,
      mirrors: [{ location: 'cache:5000/quay-org', insecure: false, pullFromMirror: 'digest-only' }],
    });
  });

  test('a node\'s entries replace the agent\'s for the same prefix and leave the others', () => {
    const agent = mirrorsRegistriesConf(parseRegistryMirrors('quay.io=boot-cache,docker.io=boot-hub'));
    const node = mirrorsRegistriesConf(parseNodeRegistryMirrors([{ registry: 'quay.io', mirror: 'rack-cache', pull_from_mirror: 'digest-only' }], 'k'), agent);
    const merged = withOverlay(agent, node);
    assert.deepEqual(sourcesOf(merged, `oci://quay.io/a/b@${DIGEST}`), ['rack-cache/a/b m', 'quay.io/a/b']);
    assert.deepEqual(sourcesOf(merged, 'oci://docker.io/library/x:1'), ['boot-hub/library/x m', 'docker.io/library/x']);
    assert.equal(withOverlay(agent, undefined), agent);
  });

  test('podman\'s private configuration: nothing written without node mirrors at the default directory; otherwise 0600 under a 0700 HOME, removed by dispose', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrors-private-'));
    try {
      const none = await preparePodmanRegistries({ base: { registries: [] }, mirrors: [], confDir: '/etc/containers/registries.conf.d', confDirIsDefault: true, parentDir: join(dir, 'p') });
      assert.deepEqual(none.env, {});
      const node = parseNodeRegistryMirrors('quay.io=rack-cache', 'bootc_registry_mirrors');
      const prepared = await preparePodmanRegistries({ base: { registries: [] }, mirrors: node, confDir: '/etc/containers/registries.conf.d', confDirIsDefault: true, parentDir: join(dir, 'p') });
      const home = prepared.env['HOME']!;
      assert.equal((await stat(home)).mode & 0o777, 0o700);
      const file = join(home, '.config/containers/registries.conf.d/90-node-mirrors.conf');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.deepEqual(parseRegistriesConf(await readFile(file, 'utf8')), prepared.overlay);
      await prepared.dispose();
      assert.deepEqual(await readdir(join(dir, 'p')), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('per-node mirrors in instance_info', () => {
  test('the list-of-objects form equals the text form', () => {
    assert.deepEqual(
      parseNodeRegistryMirrors([{ registry: 'quay.io', mirror: 'c:5000', pull_from_mirror: 'tag-only', insecure: true }, { registry: 'quay.io', mirror: 'd' }], 'k'),
      parseRegistryMirrors('quay.io=c:5000;tag-only;insecure,quay.io=d'),
    );
    assert.deepEqual(parseNodeRegistryMirrors(undefined, 'k'), []);
    assert.deepEqual(parseNodeRegistryMirrors(null, 'k'), []);
  });

  const bad: [unknown, RegExp][] = [
    [42, /expected a string or a list of objects/],
    [['quay.io=c'], /k\[0\] must be an object/],
    [[{ registry: 'quay.io' }], /registry and mirror must be strings/],
    [[{ registry: 'quay.io', mirror: 'c', ca: '/x.pem' }], /unknown field ca/],
    [[{ registry: 'quay.io', mirror: 'c', pull_from_mirror: 'never' }], /pull_from_mirror must be one of/],
    [[{ registry: 'quay.io', mirror: 'c', insecure: 'yes' }], /insecure must be true or false/],
    [[{ registry: 'quay.io', mirror: 'c;insecure' }], /cannot hold/],
    ['quay.io=c;ca=/etc/pki/x.pem', /ca= is a boot option/],
  ];
  for (const [value, message] of bad) {
    test(`refuses ${JSON.stringify(value)}`, () => {
      assert.throws(() => parseNodeRegistryMirrors(value, 'k'), (err: unknown) => isAgentError(err) && err.code === 'REGISTRY_MIRRORS_INVALID' && message.test(err.message));
    });
  }

  test('the bootc step reads bootc_registry_mirrors; write_image reads image_registry_mirrors from image_info, else instance_info', () => {
    const args = { image_source: 'oci://quay.io/org/os:42' };
    const bootc = parseBootcDeployRequest(args, { instance_info: { bootc_registry_mirrors: 'quay.io=rack-cache;digest-only' } });
    assert.deepEqual(bootc.registryMirrors, [{ registry: 'quay.io', mirror: 'rack-cache', pull: 'digest-only', insecure: false }]);
    assert.deepEqual(parseBootcDeployRequest(args, { instance_info: {} }).registryMirrors, []);
    assert.throws(() => parseBootcDeployRequest(args, { instance_info: { bootc_registry_mirrors: 'quay.io' } }), /bootc_registry_mirrors: entry "quay.io"/);

    const info = { urls: ['oci://quay.io/disks/raw:1'] };
    const fromNode = parseWriteImageRequest(info, undefined, false, { image_registry_mirrors: [{ registry: 'quay.io', mirror: 'rack-cache' }] });
    assert.deepEqual(fromNode.registryMirrors.map((m) => m.mirror), ['rack-cache']);
    const fromInfo = parseWriteImageRequest({ ...info, image_registry_mirrors: 'quay.io=info-cache' }, undefined, false, { image_registry_mirrors: 'quay.io=rack-cache' });
    assert.deepEqual(fromInfo.registryMirrors.map((m) => m.mirror), ['info-cache']);
    assert.deepEqual(parseWriteImageRequest(info, undefined, false).registryMirrors, []);
  });
});
