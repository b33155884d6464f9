/**
 * The agent writes its registry_mirrors drop-in at start into registries_conf_dir (a temporary
 * directory here: the host's /etc is never written), copies ca= files into registry_certs_dir,
 * and a later start without the option removes both; the drop-in keeps what the directory's other
 * files say about the same prefix.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseRegistriesConf, pullSources, parseReference, loadRegistriesConf } from '../../src/oci/index.ts';
import { startTestAgent, tempDir } from './harness.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';

test('start writes the registry_mirrors drop-in and CA copies; a start without the option removes them', async (t) => {
  const dir = await tempDir(t, 'agent-mirrors-');
  const confDir = join(dir, 'registries.conf.d');
  const certsDir = join(dir, 'certs.d');
  await mkdir(confDir);
  // The image's own drop-in marks quay.io insecure: ours must keep that for the same prefix.
  await writeFile(join(confDir, '10-image.conf'), '[[registry]]\nprefix = "quay.io"\nlocation = "quay.io"\ninsecure = true\n');
  await mkdir(join(certsDir, 'cache.local:5000'), { recursive: true });
  await writeFile(join(certsDir, 'cache.local:5000', 'ca.crt'), 'operator CA');
  const ca = join(dir, 'mirror.pem');
  await writeFile(ca, PEM);

  const mirrors = `quay.io=cache.local:5000/quay;digest-only;ca=${ca},quay.io=10.0.0.5:5000;insecure,docker.io/library=cache.local:5000/hub`;
  const first = await startTestAgent(t, { config: { registry_mirrors: mirrors, registries_conf_dir: confDir, registry_certs_dir: certsDir } });
  const text = await readFile(join(confDir, '99-bootc-agent-mirrors.conf'), 'utf8');
  assert.match(text, /^# Written by bootc-agent/);
  const conf = parseRegistriesConf(text);
  assert.deepEqual(conf.registries, [
    {
      prefix: 'quay.io', location: 'quay.io', insecure: true, blocked: false, mirrorByDigestOnly: false,
      mirrors: [
        { location: 'cache.local:5000/quay', insecure: false, pullFromMirror: 'digest-only' },
        { location: '10.0.0.5:5000', insecure: true, pullFromMirror: 'all' },
      ],
    },
    {
      prefix: 'docker.io/library', location: 'docker.io/library', insecure: false, blocked: false, mirrorByDigestOnly: false,
      mirrors: [{ location: 'cache.local:5000/hub', insecure: false, pullFromMirror: 'all' }],
    },
  ]);
  // As the client reads the directory: a digest pull of quay.io/org/os tries both mirrors, then quay.io.
  const all = await loadRegistriesConf(join(dir, 'no-main.conf'), confDir);
  const ref = parseReference(`oci://quay.io/org/os@sha256:${'a'.repeat(64)}`);
  assert.deepEqual(pullSources(all, ref).map((s) => `${s.registry}/${s.repository}${s.mirror ? ' (mirror)' : ''}`), [
    'cache.local:5000/quay/org/os (mirror)', '10.0.0.5:5000/org/os (mirror)', 'quay.io/org/os',
  ]);
  const caFiles = await readdir(join(certsDir, 'cache.local:5000'));
  assert.equal(caFiles.length, 2);
  const copied = caFiles.find((f) => f.startsWith('bootc-agent-mirror-'))!;
  assert.equal(await readFile(join(certsDir, 'cache.local:5000', copied), 'utf8'), PEM);
  await first.stop();

  // The same state directory, the option gone: nothing of it survives; the operator's files stay.
  await startTestAgent(t, { stateDir: first.stateDir, config: { registries_conf_dir: confDir, registry_certs_dir: certsDir } });
  assert.deepEqual(await readdir(confDir), ['10-image.conf']);
  assert.deepEqual(await readdir(join(certsDir, 'cache.local:5000')), ['ca.crt']);
});

test('a start whose drop-in directory cannot be written fails with REGISTRY_CONFIG_INVALID naming it', async (t) => {
  const dir = await tempDir(t, 'agent-mirrors-');
  const notADir = join(dir, 'file');
  await writeFile(notADir, 'x');
  await assert.rejects(
    startTestAgent(t, { config: { registry_mirrors: 'quay.io=cache.local', registries_conf_dir: notADir, registry_certs_dir: join(dir, 'certs.d') } }),
    (err: { code?: string; message?: string }) => err.code === 'REGISTRY_CONFIG_INVALID' && (err.message ?? '').includes(notADir),
  );
});
