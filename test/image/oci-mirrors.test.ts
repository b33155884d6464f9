/**
 * `oci://` disk images through registry mirrors: a node's mirrors (image_registry_mirrors) and the
 * agent's boot-time drop-in (with a ca= copied into certs.d) reach our client; the source that
 * served the image is named; a mirror that is down, lacks the image, or dies mid-blob falls back to
 * the origin without failing, with the bytes verified. Two real docker-registry instances, the
 * mirror behind a TCP proxy that can die.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseNodeRegistryMirrors, parseRegistryMirrors } from '../../src/config/index.ts';
import { openOciSource, type OpenedOciSource } from '../../src/image/oci-source.ts';
import { OciClient, type PullSource } from '../../src/oci/index.ts';
import { writeMirrorsDropIn } from '../../src/oci/mirrors.ts';
import { pushArtifact, registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

const SIZE = 8 * 1024 * 1024;

async function readAll(opened: OpenedOciSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of opened.chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

describe('oci:// images through mirrors, with fallback', { skip: registryUnavailable() }, () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let dir: string;
  const disk = randomBytes(SIZE);
  const digest = `sha256:${createHash('sha256').update(disk).digest('hex')}`;
  const proxies: TcpProxy[] = [];
  const clients: OciClient[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oci-mirrors-'));
    [origin, mirror] = await Promise.all([startRegistry({ auth: 'basic' }), startRegistry({ auth: 'none' })]);
    await pushArtifact(origin, 'disks/raw', 'v1', { bytes: disk, title: 'disk.raw' });
    await pushArtifact(mirror, 'disks/raw', 'v1', { bytes: disk, title: 'disk.raw' });
  });

  after(async () => {
    for (const c of clients) await c.close();
    for (const p of proxies) await p.close();
    await Promise.all([origin?.stop(), mirror?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  const proxy = async (dieAfter?: number): Promise<TcpProxy> => {
    const p = await startTcpProxy(mirror.host, dieAfter === undefined ? {} : { dieAfter });
    proxies.push(p);
    return p;
  };
  const client = (options: ConstructorParameters<typeof OciClient>[0] = {}): OciClient => {
    const c = new OciClient({ registries: { registries: [] }, policy: null, certsDirs: [origin.certsDir], authFilePaths: [], retry: { baseDelayMs: 1, maxDelayMs: 5 }, ...options });
    clients.push(c);
    return c;
  };
  const credentials = () => ({ type: 'basic' as const, username: origin.username, password: origin.password });
  const url = () => `oci://${origin.host}/disks/raw:v1`;
  const where = (s: PullSource) => ({ registry: s.registry, mirror: s.mirror });

  test('a node\'s mirror serves the image; the result names it', async () => {
    const p = await proxy();
    const mirrors = parseNodeRegistryMirrors([{ registry: origin.host, mirror: p.host, insecure: true }], 'image_registry_mirrors');
    const opened = await openOciSource(client(), url(), { credentials: credentials(), registryMirrors: mirrors });
    assert.deepEqual(await readAll(opened), disk);
    assert.equal(opened.digest, digest);
    assert.deepEqual(where(opened.image.source), { registry: p.host, mirror: true });
    assert.deepEqual(where(opened.servedBy.source), { registry: p.host, mirror: true });
    assert.ok(p.served() > SIZE, 'the bytes came through the mirror');
  });

  test('a mirror that is down at start: the origin serves it', async () => {
    const p = await proxy();
    p.kill();
    const mirrors = parseNodeRegistryMirrors(`${origin.host}=${p.host};insecure`, 'image_registry_mirrors');
    const opened = await openOciSource(client(), url(), { credentials: credentials(), registryMirrors: mirrors });
    assert.deepEqual(await readAll(opened), disk);
    assert.deepEqual(where(opened.image.source), { registry: origin.host, mirror: false });
  });

  test('a mirror without the image (404): the origin serves it', async () => {
    const p = await proxy();
    const mirrors = parseNodeRegistryMirrors(`${origin.host}=${p.host}/elsewhere;insecure`, 'image_registry_mirrors');
    const opened = await openOciSource(client(), url(), { credentials: credentials(), registryMirrors: mirrors });
    assert.deepEqual(await readAll(opened), disk);
    assert.deepEqual(where(opened.image.source), { registry: origin.host, mirror: false });
  });

  test('a mirror that dies mid-blob: the download continues on the origin, verified', async () => {
    const p = await proxy(3 * 1024 * 1024);
    const switches: string[] = [];
    const mirrors = parseNodeRegistryMirrors(`${origin.host}=${p.host};insecure`, 'image_registry_mirrors');
    const opened = await openOciSource(client(), url(), {
      credentials: credentials(), registryMirrors: mirrors, onSourceChange: (s) => switches.push(s.registry),
    });
    assert.deepEqual(where(opened.image.source), { registry: p.host, mirror: true }, 'resolved on the mirror');
    assert.deepEqual(await readAll(opened), disk);
    assert.ok(p.dead(), 'the mirror died during the download');
    assert.deepEqual(switches, [origin.host]);
    assert.deepEqual(where(opened.servedBy.source), { registry: origin.host, mirror: false });
  });

  test('the boot-time drop-in: a ca= copied into certs.d lets our client verify the mirror', async () => {
    const p = await proxy();
    const confDir = join(dir, 'registries.conf.d');
    const certsDir = join(dir, 'certs.d');
    const mirrors = parseRegistryMirrors(`${origin.host}=${p.host};ca=${mirror.cert.certPath}`);
    await writeMirrorsDropIn({ dir: confDir, fileName: '99-bootc-agent-mirrors.conf', certsDir, registriesConfPath: join(dir, 'none.conf') }, mirrors, 'test');
    const c = client({ registries: undefined, registriesConfPath: join(dir, 'none.conf'), registriesConfDir: confDir, certsDirs: [certsDir, origin.certsDir] });
    const opened = await openOciSource(c, url(), { credentials: credentials() });
    assert.deepEqual(await readAll(opened), disk);
    assert.deepEqual(where(opened.image.source), { registry: p.host, mirror: true });
  });
});
