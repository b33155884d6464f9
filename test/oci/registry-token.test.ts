import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createOciClient, parsePullSecret, credentialsFromPullSecret, type OciClient } from '../../src/oci/index.ts';
import { pushArtifact, pushImage, registryUnavailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';

const skip = registryUnavailable();

describe('real docker-registry with token (Bearer) auth', { skip }, () => {
  let reg: TestRegistry;
  let client: OciClient;
  let dir: string;

  before(async () => {
    reg = await startRegistry({ auth: 'token' });
    dir = await mkdtemp(join(tmpdir(), 'oci-auth-'));
    const authFile = join(dir, 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }));
    client = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [authFile], certsDirs: [reg.certsDir] });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('credentials from auth.json: token exchange with Basic creds, one token reused per scope', async () => {
    const pushed = await pushImage(reg, 'team/app', 'v1', { layers: [{ bytes: randomBytes(2048) }] });
    const before = reg.tokenServer!.requests.length;
    const image = await client.inspectImage(`oci://${reg.host}/team/app:v1`, { platform: { architecture: 'amd64' } });
    assert.equal(image.digest, pushed.digest);
    const out = new PassThrough();
    out.resume();
    await client.downloadBlob(image, image.layers[0]!, out);
    const tokenRequests = reg.tokenServer!.requests.slice(before);
    assert.equal(tokenRequests.length, 1);
    const t = tokenRequests[0]!;
    assert.equal(t.url.searchParams.get('service'), 'test-registry');
    assert.deepEqual(t.url.searchParams.getAll('scope'), ['repository:team/app:pull']);
    assert.equal(t.url.searchParams.get('account'), reg.username);
    assert.ok(t.authorization?.startsWith('Basic '));
  });

  test('pull secret (upstream double base64) and an artifact', async () => {
    const art = await pushArtifact(reg, 'ironic/kernel', 'v1', { bytes: randomBytes(700), title: 'vmlinuz' });
    const secret = parsePullSecret(Buffer.from(Buffer.from(`${reg.username}:${reg.password}`).toString('base64')).toString('base64'));
    assert.equal(secret.kind, 'double-base64');
    const credentials = credentialsFromPullSecret(secret, reg.host, 'ironic/kernel');
    const noFiles = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [reg.certsDir] });
    try {
      const image = await noFiles.inspectImage(`oci://${reg.host}/ironic/kernel@${art.digest}`, { credentials });
      assert.equal(image.kind, 'artifact');
      assert.equal(image.fileName, 'vmlinuz');
      assert.equal(image.totalCompressedSize, 700);
      await assert.rejects(noFiles.resolve(`oci://${reg.host}/ironic/kernel:v1`), (e: { code?: string }) => e.code === 'REGISTRY_AUTH_FAILED');
      await assert.rejects(noFiles.resolve(`oci://${reg.host}/ironic/kernel:v1`, { credentials: { type: 'basic', username: reg.username, password: 'bad' } }),
        (e: { code?: string }) => e.code === 'REGISTRY_AUTH_FAILED');
    } finally {
      await noFiles.close();
    }
  });

  test('token replies with access_token only and without expires_in', async () => {
    await pushImage(reg, 'shape/x', 'v1', { layers: [{ bytes: randomBytes(10) }] });
    reg.tokenServer!.shape.accessTokenOnly = true;
    reg.tokenServer!.shape.omitExpiresIn = true;
    try {
      const resolved = await client.resolve(`oci://${reg.host}/shape/x:v1`);
      assert.equal(resolved.document.kind, 'manifest');
    } finally {
      reg.tokenServer!.shape.accessTokenOnly = false;
      reg.tokenServer!.shape.omitExpiresIn = false;
    }
  });
});
