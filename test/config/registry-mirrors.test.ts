/**
 * The registry_mirrors format: parsed strictly, every error names the entry; the option from the
 * kernel command line, the environment and a flag; a bad value (or an unreadable ca=) stops the
 * agent's configuration with a message naming the key.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { formatRegistryMirrors, loadConfig, parseFlags, parseRegistryMirrors } from '../../src/config/index.ts';
import { isAgentError } from '../../src/errors.ts';

describe('parseRegistryMirrors', () => {
  test('entries in order, several mirrors for one registry, namespace prefixes and flags', () => {
    const text = 'quay.io=mirror.local:5000/quay;digest-only, quay.io=cache.local, docker.io/library=10.0.0.9:5000;insecure,'
      + 'quay.io/org=[fd00::1]:5000/org;tag-only;ca=/etc/pki/mirror.pem';
    assert.deepEqual(parseRegistryMirrors(text), [
      { registry: 'quay.io', mirror: 'mirror.local:5000/quay', pull: 'digest-only', insecure: false },
      { registry: 'quay.io', mirror: 'cache.local', pull: 'all', insecure: false },
      { registry: 'docker.io/library', mirror: '10.0.0.9:5000', pull: 'all', insecure: true },
      { registry: 'quay.io/org', mirror: '[fd00::1]:5000/org', pull: 'tag-only', insecure: false, ca: '/etc/pki/mirror.pem' },
    ]);
    assert.equal(formatRegistryMirrors(parseRegistryMirrors(text)), text.replace(/, /g, ','));
  });

  test('empty text is no mirror', () => {
    assert.deepEqual(parseRegistryMirrors(''), []);
    assert.deepEqual(parseRegistryMirrors('  '), []);
  });

  const bad: [string, RegExp][] = [
    ['quay.io', /entry "quay.io": expected REGISTRY=MIRROR/],
    ['=mirror', /expected REGISTRY=MIRROR/],
    ['quay.io=', /mirror "" is not host/],
    ['quay.io=mirror;digest-only;tag-only', /exclude each other/],
    ['quay.io=mirror;insecure;insecure', /flag "insecure" given twice/],
    ['quay.io=mirror;fast', /unknown flag "fast"/],
    ['quay.io=mirror;ca=relative.pem', /absolute path/],
    ['quay.io=mirror;ca=/etc/../x.pem', /absolute path/],
    ['quay.io=mirror;insecure;ca=/x.pem', /insecure and ca= exclude each other/],
    ['quay.io=mirror;', /empty flag/],
    ['quay.io=mirror,,docker.io=m2', /empty entry/],
    ['quay.io=mirror,', /empty entry/],
    ['quay.io=Mirror.local/UPPER', /not host\[:port\]\[\/path\]/],
    ['quay.io=mirror:99999', /port 99999 out of range/],
    ['quay.io=https://mirror', /not host/],
    ['quay.io=quay.io', /its own mirror/],
    ['quay.io=m1,quay.io=m1', /the same mirror twice/],
    ['*.example.com=m1', /registry "\*\.example\.com" is not host/],
  ];
  for (const [text, message] of bad) {
    test(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseRegistryMirrors(text, 'bootc_registry_mirrors'), (err: unknown) => {
        assert.ok(isAgentError(err));
        assert.equal(err.code, 'REGISTRY_MIRRORS_INVALID');
        assert.match(err.message, /^bootc_registry_mirrors: entry /);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test('more than 64 entries are refused', () => {
    const text = Array.from({ length: 65 }, (_, i) => `quay.io=m${i}`).join(',');
    assert.throws(() => parseRegistryMirrors(text), /more than 64 entries/);
  });
});

describe('the registry_mirrors option', () => {
  let dir: string;
  let pem: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mirrors-config-'));
    pem = join(dir, 'mirror.pem');
    await writeFile(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    await writeFile(join(dir, 'not-pem.txt'), 'hello');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('from the kernel command line, the environment and a flag, with its directories', () => {
    const cmdline = `quiet bootc-agent-registry-mirrors=quay.io=mirror.local:5000;digest-only;ca=${pem} bootc-agent-registries-conf-dir=/run/rc.d`;
    const fromCmdline = loadConfig({ cmdline });
    assert.equal(fromCmdline.registry_mirrors, `quay.io=mirror.local:5000;digest-only;ca=${pem}`);
    assert.equal(fromCmdline.registries_conf_dir, '/run/rc.d');
    assert.equal(fromCmdline.registry_certs_dir, '/etc/containers/certs.d');
    const fromEnv = loadConfig({ cmdline, env: { BOOTC_AGENT_REGISTRY_MIRRORS: 'docker.io=cache:5000' } });
    assert.equal(fromEnv.registry_mirrors, 'docker.io=cache:5000');
    const { overrides } = parseFlags(['--registry-mirrors', 'ghcr.io=cache', '--registry-certs-dir=/run/certs.d']);
    const fromFlag = loadConfig({ env: { BOOTC_AGENT_REGISTRY_MIRRORS: 'docker.io=cache:5000' }, overrides });
    assert.equal(fromFlag.registry_mirrors, 'ghcr.io=cache');
    assert.equal(fromFlag.registry_certs_dir, '/run/certs.d');
    assert.equal(loadConfig({}).registries_conf_dir, '/etc/containers/registries.conf.d');
  });

  test('a quoted value (as a grub.cfg needs it, ";" separating GRUB commands) reads the same', () => {
    const config = loadConfig({ cmdline: 'ro bootc-agent-registry-mirrors="quay.io=cache:5000;digest-only,docker.io=hub-cache" quiet' });
    assert.equal(config.registry_mirrors, 'quay.io=cache:5000;digest-only,docker.io=hub-cache');
  });

  const refused: [string, RegExp][] = [
    ['quay.io=mirror;bogus', /unknown flag "bogus"/],
    ['quay.io=mirror;ca=/nonexistent/mirror.pem', /ca=\/nonexistent\/mirror.pem cannot be read: ENOENT/],
  ];
  for (const [value, message] of refused) {
    test(`a bad value stops the configuration, naming the key: ${value}`, () => {
      assert.throws(() => loadConfig({ cmdline: `bootc-agent-registry-mirrors=${value}` }), (err: unknown) => {
        assert.ok(isAgentError(err));
        assert.equal(err.code, 'REGISTRY_MIRRORS_INVALID');
        assert.match(err.message, /registry_mirrors \/ bootc-agent-registry-mirrors \/ BOOTC_AGENT_REGISTRY_MIRRORS \(from kernel command line bootc-agent-registry-mirrors\)/);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test('a ca= file without a PEM certificate is refused', () => {
    assert.throws(() => loadConfig({ env: { BOOTC_AGENT_REGISTRY_MIRRORS: `quay.io=m;ca=${join(dir, 'not-pem.txt')}` } }),
      /\(from environment BOOTC_AGENT_REGISTRY_MIRRORS\): ca=.*not-pem.txt holds no PEM certificate/);
  });
});
