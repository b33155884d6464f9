/**
 * writeArtifactToTarget (the write_image path) with a node's mirrors: the raw `oci://` image from a
 * mirror (a real registry behind a TCP proxy), the result naming it; a mirror that dies mid-blob
 * hands the rest to the origin and the written bytes are the image's, the result naming the origin.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseNodeRegistryMirrors } from '../../src/config/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { writeArtifactToTarget } from '../../src/image/index.ts';
import { createOciClient, type OciClient } from '../../src/oci/index.ts';
import { pushArtifact, registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { makeGptImage, tempDir, toolMissing } from './helpers.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('write_image\'s oci:// path through a node\'s mirror', { skip: registryUnavailable() ?? toolMissing('sgdisk') }, () => {
  const runner = createExecaRunner();
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let client: OciClient;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let image: Buffer;
  const proxies: TcpProxy[] = [];
  const credentials = () => ({ type: 'basic' as const, username: origin.username, password: origin.password });

  before(async () => {
    tmp = await tempDir('image-mirrors-');
    [origin, mirror] = await Promise.all([startRegistry({ auth: 'basic' }), startRegistry({ auth: 'none' })]);
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [origin.certsDir], retry: { baseDelayMs: 1, maxDelayMs: 5 } });
    image = await makeGptImage(tmp.dir, 16);
    await pushArtifact(origin, 'disks/raw', 'v1', { bytes: image, title: 'disk.raw' });
    await pushArtifact(mirror, 'disks/raw', 'v1', { bytes: image, title: 'disk.raw' });
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await client?.close();
    await Promise.all([origin?.stop(), mirror?.stop()]);
    await tmp?.cleanup();
  });

  async function write(proxy: TcpProxy, name: string) {
    const out = join(tmp.dir, name);
    const result = await writeArtifactToTarget({
      source: `oci://${origin.host}/disks/raw:v1`, target: out, oci: client, runner, credentials: credentials(), platform: { architecture: 'amd64' },
      registryMirrors: parseNodeRegistryMirrors(`${origin.host}=${proxy.host};insecure`, 'image_registry_mirrors'),
    });
    assert.equal(sha256(await readFile(out)), sha256(image));
    // What the step's result carries (it spreads result.oci after the write).
    return { ...result.oci };
  }

  test('the mirror serves the image and the result names it', async () => {
    const proxy = await startTcpProxy(mirror.host);
    proxies.push(proxy);
    const oci = await write(proxy, 'from-mirror.raw');
    assert.deepEqual(oci.source, { registry: proxy.host, repository: 'disks/raw', mirror: true });
    assert.ok(proxy.served() > image.length);
  });

  test('the mirror dies mid-blob: the origin serves the rest, the result names it', async () => {
    const proxy = await startTcpProxy(mirror.host, { dieAfter: 4 * 1024 * 1024 });
    proxies.push(proxy);
    const oci = await write(proxy, 'fallback.raw');
    assert.ok(proxy.dead());
    assert.deepEqual(oci.source, { registry: origin.host, repository: 'disks/raw', mirror: false });
  });
});
