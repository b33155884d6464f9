// Signatures made by a real cosign (Debian trixie's 2.5, test/helpers/cosign.ts) with a key it
// generated and --tlog-upload=false, verified by the agent's OCI client: cosign's .sig tag, its
// OCI 1.1 referrer on docker-registry (the referrers tag fallback cosign writes) and on a
// registry serving the referrers API.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { createOciClient, parsePolicy, type OciClient } from '../../src/oci/index.ts';
import { cosignUnavailable, cosignWorkspace, ensureCosignRoot, type CosignWorkspace } from '../helpers/cosign.ts';
import { startReferrersRegistry, type ReferrersRegistry } from '../helpers/referrers-registry.ts';
import { pushImage, registryUnavailable, startRegistry, writeCertsDir, type TestRegistry } from '../helpers/registry.ts';
import { makeKey } from '../helpers/signatures.ts';

const skip = registryUnavailable() ?? cosignUnavailable();

describe('signatures made by cosign 2.5', { skip }, () => {
  let reg: TestRegistry;
  let front: ReferrersRegistry;
  let ws: CosignWorkspace | undefined;
  let dir: string;
  let unavailable: string | undefined;
  const clients: OciClient[] = [];
  const creds = () => ({ type: 'basic' as const, username: reg.username, password: reg.password });

  const clientFor = (keyPath: string, signedIdentity: Record<string, unknown> = { type: 'matchRepository' }) => {
    const client = createOciClient({
      registries: { registries: [] }, authFilePaths: [], certsDirs: [join(dir, 'certs.d')],
      policy: parsePolicy(JSON.stringify({ default: [{ type: 'sigstoreSigned', keyPath, signedIdentity }] })),
    });
    clients.push(client);
    return client;
  };
  const signed = async (host: string, repo: string, extra: string[] = [], env: Record<string, string> = {}) => {
    const img = await pushImage(reg, repo, 'v1', { layers: [{ bytes: gzipSync(randomBytes(512)) }] });
    await ws!.cosign(['sign', '--yes', '--key', 'cosign.key', '--tlog-upload=false', '--registry-cacert', 'ca.pem', ...extra, `${host}/${repo}@${img.digest}`], env);
    return img;
  };

  before(async () => {
    unavailable = await ensureCosignRoot();
    reg = await startRegistry({ auth: 'basic' });
    front = await startReferrersRegistry(reg);
    dir = await mkdtemp(join(tmpdir(), 'cosign-test-'));
    await writeCertsDir(join(dir, 'certs.d'), reg.host, reg.cert.cert);
    await writeCertsDir(join(dir, 'certs.d'), front.host, reg.cert.cert);
    if (!unavailable) ws = await cosignWorkspace([reg, { ...reg, host: front.host }], reg.cert.cert);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await ws?.close();
    await front?.close();
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('.sig tag (cosign sign): verified with cosign.pub; refused with another key and for another identity', async (t) => {
    if (unavailable) return t.skip(unavailable);
    const img = await signed(reg.host, 'cosign/tag');
    const ref = `oci://${reg.host}/cosign/tag:v1`;
    const ok = await clientFor(ws!.publicKeyPath).inspectImage(ref, { credentials: creds(), kind: 'bootc-image' });
    assert.equal(ok.signatures?.[0]?.format, 'simple-signing');
    assert.equal(ok.signatures?.[0]?.digest, img.digest);
    assert.match(ok.signatures?.[0]?.foundIn ?? '', /^tag sha256-[0-9a-f]{64}\.sig/);
    assert.equal(ok.signatures?.[0]?.signedReference, `${reg.host}/cosign/tag`);
    const otherKey = join(dir, 'other.pub');
    await writeFile(otherKey, makeKey().publicPem);
    await assert.rejects(clientFor(otherKey).resolve(ref, { credentials: creds() }), { code: 'OCI_SIGNATURE_INVALID' });
    await assert.rejects(clientFor(ws!.publicKeyPath, { type: 'exactRepository', dockerRepository: `${reg.host}/cosign/other` }).resolve(ref, { credentials: creds() }),
      { code: 'OCI_SIGNATURE_IDENTITY_MISMATCH' });
  });

  test('OCI 1.1 referrer (--registry-referrers-mode=oci-1-1) on docker-registry: found through the referrers tag', async (t) => {
    if (unavailable) return t.skip(unavailable);
    await signed(reg.host, 'cosign/referrer', ['--registry-referrers-mode=oci-1-1'], { COSIGN_EXPERIMENTAL: '1' });
    const ok = await clientFor(ws!.publicKeyPath).resolve(`oci://${reg.host}/cosign/referrer:v1`, { credentials: creds() });
    assert.match(ok.signatures?.[0]?.foundIn ?? '', /^referrer sha256:[0-9a-f]{64} \(referrers tag sha256-[0-9a-f]{64}\)/);
    assert.equal(ok.signatures?.[0]?.format, 'simple-signing');
  });

  test('OCI 1.1 referrer on a registry serving the referrers API: found through the API', async (t) => {
    if (unavailable) return t.skip(unavailable);
    const before = front.apiRequests;
    await signed(front.host, 'cosign/api', ['--registry-referrers-mode=oci-1-1'], { COSIGN_EXPERIMENTAL: '1' });
    const ok = await clientFor(ws!.publicKeyPath).resolve(`oci://${front.host}/cosign/api:v1`, { credentials: creds() });
    assert.match(ok.signatures?.[0]?.foundIn ?? '', /\(referrers API\)/);
    assert.ok(front.apiRequests > before);
    // The registry answered OCI-Subject, so cosign wrote no fallback tag: without the API there is nothing.
    await assert.rejects(clientFor(ws!.publicKeyPath).resolve(`oci://${reg.host}/cosign/api:v1`, { credentials: creds() }), { code: 'OCI_SIGNATURE_MISSING' });
  });
});
