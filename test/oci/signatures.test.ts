// sigstoreSigned requirements against the real docker-registry: cosign's `.sig` tag scheme and
// v0.3 bundles as OCI 1.1 referrers (the registry's referrers tag fallback, and the referrers
// API served by test/helpers/referrers-registry.ts). Signatures here are built by the test
// (node:crypto, and the sigstore libraries' own bundle types); test/oci/cosign.test.ts has the
// ones a real cosign made.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { createOciClient, parsePolicy, type OciClient } from '../../src/oci/index.ts';
import { startReferrersRegistry, type ReferrersRegistry } from '../helpers/referrers-registry.ts';
import { pushImage, registryUnavailable, startRegistry, writeCertsDir, type PushedDescriptor, type TestRegistry } from '../helpers/registry.ts';
import { makeBundle, makeKey, pushBundleReferrer, pushSigTag, signPayload, simplePayload, type TestKey } from '../helpers/signatures.ts';

const skip = registryUnavailable();

type Details = { code?: string; message?: string; details?: Record<string, unknown> };
const fails = (code: string, check: (e: Details) => boolean = () => true) => (e: Details) => {
  assert.equal(e.code, code, e.message);
  return check(e);
};

describe('sigstoreSigned verification against a real registry', { skip }, () => {
  let reg: TestRegistry;
  let front: ReferrersRegistry;
  let dir: string;
  let trusted: TestKey;
  let other: TestKey;
  const clients: OciClient[] = [];
  const creds = () => ({ type: 'basic' as const, username: reg.username, password: reg.password });

  // A client whose policy requires `requirement` (keyPath: the trusted key unless given) for every image.
  const clientFor = (requirement: Record<string, unknown>) => {
    const client = createOciClient({
      registries: { registries: [] }, authFilePaths: [], certsDirs: [join(dir, 'certs.d')],
      policy: parsePolicy(JSON.stringify({ default: [{ type: 'sigstoreSigned', keyPath: join(dir, 'trusted.pub'), ...requirement }] })),
    });
    clients.push(client);
    return client;
  };
  const image = async (repo: string, tag: string): Promise<PushedDescriptor> =>
    pushImage(reg, repo, tag, { layers: [{ bytes: gzipSync(randomBytes(512)) }] });

  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
    front = await startReferrersRegistry(reg);
    dir = await mkdtemp(join(tmpdir(), 'sig-test-'));
    await writeCertsDir(join(dir, 'certs.d'), reg.host, reg.cert.cert);
    await writeCertsDir(join(dir, 'certs.d'), front.host, reg.cert.cert);
    trusted = makeKey();
    other = makeKey();
    await writeFile(join(dir, 'trusted.pub'), trusted.publicPem);
    await writeFile(join(dir, 'other.pub'), other.publicPem);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await front?.close();
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('.sig tag: a simple-signing signature by the trusted key for this digest is verified and reported', async () => {
    const img = await image('sig/a', 'v1');
    await pushSigTag(reg, 'sig/a', img.digest, [{ payload: simplePayload(`${reg.host}/sig/a`, img.digest), signature: signPayload(trusted, simplePayload(`${reg.host}/sig/a`, img.digest)) }]);
    const client = clientFor({ signedIdentity: { type: 'matchRepository' } });
    const inspected = await client.inspectImage(`oci://${reg.host}/sig/a:v1`, { credentials: creds(), kind: 'bootc-image' });
    assert.equal(inspected.digest, img.digest);
    const [v] = inspected.signatures ?? [];
    assert.equal(inspected.signatures?.length, 1);
    assert.equal(v?.format, 'simple-signing');
    assert.equal(v?.digest, img.digest);
    assert.match(v?.foundIn ?? '', /^tag sha256-[0-9a-f]{64}\.sig/);
    assert.match(v?.keyFingerprint ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(v?.keySource, join(dir, 'trusted.pub'));
    assert.equal(v?.signedReference, `${reg.host}/sig/a`);
    assert.equal(v?.signedIdentity, 'matchRepository');
  });

  test('no signature anywhere: OCI_SIGNATURE_MISSING naming the requirement, key and the places searched', async () => {
    await image('sig/none', 'v1');
    await assert.rejects(clientFor({}).resolve(`oci://${reg.host}/sig/none:v1`, { credentials: creds() }), fails('OCI_SIGNATURE_MISSING', (e) => {
      const searched = e.details?.['searched'] as string[];
      return e.details?.['requirement'] === 'sigstoreSigned' && (e.details?.['keys'] as { source: string }[])[0]?.source === join(dir, 'trusted.pub')
        && searched.some((s) => s.endsWith('.sig')) && searched.some((s) => s.startsWith('referrers API')) && searched.some((s) => s.startsWith('referrers tag'));
    }));
  });

  test('signature by another key: OCI_SIGNATURE_INVALID', async () => {
    const img = await image('sig/otherkey', 'v1');
    const payload = simplePayload(`${reg.host}/sig/otherkey`, img.digest);
    await pushSigTag(reg, 'sig/otherkey', img.digest, [{ payload, signature: signPayload(other, payload) }]);
    await assert.rejects(clientFor({ signedIdentity: { type: 'matchRepository' } }).resolve(`oci://${reg.host}/sig/otherkey:v1`, { credentials: creds() }),
      fails('OCI_SIGNATURE_INVALID', (e) => /does not verify/.test(String((e.details?.['signatures'] as { problem: string }[])[0]?.problem))));
  });

  test('a tampered payload (signature of other bytes): OCI_SIGNATURE_INVALID', async () => {
    const img = await image('sig/tamper', 'v1');
    const payload = simplePayload(`${reg.host}/sig/tamper`, img.digest);
    const signed = simplePayload(`${reg.host}/sig/tamper2`, img.digest);
    await pushSigTag(reg, 'sig/tamper', img.digest, [{ payload, signature: signPayload(trusted, signed) }]);
    await assert.rejects(clientFor({ signedIdentity: { type: 'matchRepository' } }).resolve(`oci://${reg.host}/sig/tamper:v1`, { credentials: creds() }), fails('OCI_SIGNATURE_INVALID'));
  });

  test('a trusted signature of another digest: OCI_SIGNATURE_DIGEST_MISMATCH', async () => {
    const img = await image('sig/digest', 'v1');
    const old = await image('sig/digest', 'v0');
    // The old image's valid signature copied under the new digest's .sig tag.
    const payload = simplePayload(`${reg.host}/sig/digest`, old.digest);
    await pushSigTag(reg, 'sig/digest', img.digest, [{ payload, signature: signPayload(trusted, payload) }]);
    await assert.rejects(clientFor({ signedIdentity: { type: 'matchRepository' } }).resolve(`oci://${reg.host}/sig/digest:v1`, { credentials: creds() }),
      fails('OCI_SIGNATURE_DIGEST_MISMATCH', (e) => JSON.stringify(e.details).includes(old.digest)));
  });

  test('a trusted signature for another repository: OCI_SIGNATURE_IDENTITY_MISMATCH; exactRepository naming it passes', async () => {
    const img = await image('sig/ident', 'v1');
    const payload = simplePayload(`${reg.host}/elsewhere/app`, img.digest);
    await pushSigTag(reg, 'sig/ident', img.digest, [{ payload, signature: signPayload(trusted, payload) }]);
    const ref = `oci://${reg.host}/sig/ident:v1`;
    await assert.rejects(clientFor({ signedIdentity: { type: 'matchRepository' } }).resolve(ref, { credentials: creds() }),
      fails('OCI_SIGNATURE_IDENTITY_MISMATCH', (e) => e.details?.['signed_identity'] === 'matchRepository' && /elsewhere\/app/.test(e.message ?? '')));
    const ok = await clientFor({ signedIdentity: { type: 'exactRepository', dockerRepository: `${reg.host}/elsewhere/app` } }).resolve(ref, { credentials: creds() });
    assert.equal(ok.signatures?.[0]?.signedIdentity, `exactRepository ${reg.host}/elsewhere/app`);
  });

  test('default signedIdentity (matchRepoDigestOrExact): a repository-only identity passes by digest, not by tag', async () => {
    const img = await image('sig/default', 'v1');
    const payload = simplePayload(`${reg.host}/sig/default`, img.digest);
    await pushSigTag(reg, 'sig/default', img.digest, [{ payload, signature: signPayload(trusted, payload) }]);
    const byDigest = await clientFor({}).resolve(`oci://${reg.host}/sig/default@${img.digest}`, { credentials: creds() });
    assert.equal(byDigest.signatures?.[0]?.signedIdentity, 'matchRepoDigestOrExact');
    await assert.rejects(clientFor({}).resolve(`oci://${reg.host}/sig/default:v1`, { credentials: creds() }), fails('OCI_SIGNATURE_IDENTITY_MISMATCH'));
  });

  test('keyPaths / keyData: any listed key verifies; a second requirement must be met too', async () => {
    const img = await image('sig/keys', 'v1');
    const payload = simplePayload(`${reg.host}/sig/keys`, img.digest);
    await pushSigTag(reg, 'sig/keys', img.digest, [{ payload, signature: signPayload(trusted, payload) }]);
    const ref = `oci://${reg.host}/sig/keys:v1`;
    const viaPaths = await clientFor({ keyPath: undefined, keyPaths: [join(dir, 'other.pub'), join(dir, 'trusted.pub')], signedIdentity: { type: 'matchRepository' } }).resolve(ref, { credentials: creds() });
    assert.equal(viaPaths.signatures?.[0]?.keySource, join(dir, 'trusted.pub'));
    const viaData = await clientFor({ keyPath: undefined, keyData: Buffer.from(trusted.publicPem).toString('base64'), signedIdentity: { type: 'matchRepository' } }).resolve(ref, { credentials: creds() });
    assert.equal(viaData.signatures?.[0]?.keySource, 'keyData[0]');
    const both = createOciClient({
      registries: { registries: [] }, authFilePaths: [], certsDirs: [join(dir, 'certs.d')],
      policy: parsePolicy(JSON.stringify({ default: [
        { type: 'sigstoreSigned', keyPath: join(dir, 'trusted.pub'), signedIdentity: { type: 'matchRepository' } },
        { type: 'sigstoreSigned', keyPath: join(dir, 'other.pub'), signedIdentity: { type: 'matchRepository' } },
      ] })),
    });
    clients.push(both);
    await assert.rejects(both.resolve(ref, { credentials: creds() }), fails('OCI_SIGNATURE_INVALID', (e) => (e.details?.['keys'] as { source: string }[])[0]?.source === join(dir, 'other.pub')));
  });

  test('v0.3 bundle as a referrer, found through the referrers tag fallback of docker-registry', async () => {
    const img = await image('sig/bundle', 'v1');
    await pushBundleReferrer(reg, 'sig/bundle', img, makeBundle(trusted, img.digest), true);
    const resolved = await clientFor({ signedIdentity: { type: 'matchRepository' } }).resolve(`oci://${reg.host}/sig/bundle:v1`, { credentials: creds() });
    const v = resolved.signatures?.[0];
    assert.equal(v?.format, 'sigstore-bundle');
    assert.match(v?.foundIn ?? '', /^referrer sha256:[0-9a-f]{64} \(referrers tag sha256-[0-9a-f]{64}\)/);
    assert.equal(v?.signedReference, undefined);
  });

  test('v0.3 bundle through the referrers API (a registry that serves it)', async () => {
    const img = await image('sig/api', 'v1');
    const before = front.apiRequests;
    // Pushed through the front without the fallback tag: only the API knows it.
    const viaFront = { ...reg, url: `https://${front.host}` } as TestRegistry;
    const pushManifest = async (repo: string, ref: string, body: string | Buffer, mediaType: string) => {
      const { request, Agent } = await import('undici');
      const agent = new Agent({ connect: { ca: reg.cert.cert } });
      const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
      const res = await request(`https://${front.host}/v2/${repo}/manifests/${ref}`, {
        method: 'PUT', dispatcher: agent, body: bytes,
        headers: { 'content-type': mediaType, authorization: `Basic ${Buffer.from(`${reg.username}:${reg.password}`).toString('base64')}` },
      });
      assert.equal(res.statusCode, 201, await res.body.text());
      assert.equal(res.headers['oci-subject'] !== undefined || !bytes.includes('"subject"'), true);
      await agent.close();
      return { mediaType, digest: `sha256:${(await import('node:crypto')).createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
    };
    await pushBundleReferrer({ ...viaFront, pushManifest }, 'sig/api', img, makeBundle(trusted, img.digest), false);
    const client = clientFor({ signedIdentity: { type: 'matchRepository' } });
    const resolved = await client.resolve(`oci://${front.host}/sig/api:v1`, { credentials: creds() });
    assert.ok(front.apiRequests > before);
    assert.match(resolved.signatures?.[0]?.foundIn ?? '', /\(referrers API\)/);
    // Not reachable through the plain registry (no API, no fallback tag): missing there.
    await assert.rejects(clientFor({ signedIdentity: { type: 'matchRepository' } }).resolve(`oci://${reg.host}/sig/api:v1`, { credentials: creds() }), fails('OCI_SIGNATURE_MISSING'));
  });

  test('bundles: another key, another digest, an attestation instead of a signature', async () => {
    const img = await image('sig/badbundle', 'v1');
    const old = await image('sig/badbundle', 'v0');
    const ref = `oci://${reg.host}/sig/badbundle:v1`;
    const c = () => clientFor({ signedIdentity: { type: 'matchRepository' } });
    await pushBundleReferrer(reg, 'sig/badbundle', img, makeBundle(other, img.digest), true);
    await assert.rejects(c().resolve(ref, { credentials: creds() }), fails('OCI_SIGNATURE_INVALID'));
    await pushBundleReferrer(reg, 'sig/badbundle', img, makeBundle(trusted, img.digest, 'https://slsa.dev/provenance/v1'), true);
    await assert.rejects(c().resolve(ref, { credentials: creds() }), fails('OCI_SIGNATURE_INVALID', (e) => /attestation, not an image signature/.test(e.message ?? '')));
    await pushBundleReferrer(reg, 'sig/badbundle', img, makeBundle(trusted, old.digest), true);
    await assert.rejects(c().resolve(ref, { credentials: creds() }), fails('OCI_SIGNATURE_DIGEST_MISMATCH'));
  });

  test('a bundle names no tag: matchRepoDigestOrExact by tag refuses it, by digest accepts it', async () => {
    const img = await image('sig/bundletag', 'v1');
    await pushBundleReferrer(reg, 'sig/bundletag', img, makeBundle(trusted, img.digest), true);
    await assert.rejects(clientFor({}).resolve(`oci://${reg.host}/sig/bundletag:v1`, { credentials: creds() }), fails('OCI_SIGNATURE_IDENTITY_MISMATCH'));
    const ok = await clientFor({}).resolve(`oci://${reg.host}/sig/bundletag@${img.digest}`, { credentials: creds() });
    assert.equal(ok.signatures?.[0]?.format, 'sigstore-bundle');
  });
});

describe('requirements refused before any request', () => {
  const refuse = async (requirement: Record<string, unknown>, code: string) => {
    const client = createOciClient({ registries: { registries: [] }, authFilePaths: [], policy: parsePolicy(JSON.stringify({ default: [requirement] })) });
    // Port 9 on loopback: a request would fail with REGISTRY_UNREACHABLE, not `code`.
    await assert.rejects(client.resolve('oci://127.0.0.1:9/x/y:1'), fails(code));
    await client.close();
  };
  test('keyless (fulcio) and rekor requirements: OCI_SIGNATURE_REQUIRED', async () => {
    await refuse({ type: 'sigstoreSigned', fulcio: { caPath: '/ca', oidcIssuer: 'https://x', subjectEmail: 'a@b' }, rekorPublicKeyPath: '/r' }, 'OCI_SIGNATURE_REQUIRED');
    await refuse({ type: 'sigstoreSigned', keyPath: '/k', rekorPublicKeyPath: '/r' }, 'OCI_SIGNATURE_REQUIRED');
  });
  test('signedBy and signedBaseLayer: OCI_SIGNATURE_REQUIRED', async () => {
    await refuse({ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/k' }, 'OCI_SIGNATURE_REQUIRED');
    await refuse({ type: 'signedBaseLayer', baseLayerIdentity: { type: 'matchRepository' } }, 'OCI_SIGNATURE_REQUIRED');
  });
  test('unknown requirement or signedIdentity type: OCI_POLICY_REQUIREMENT_UNKNOWN', async () => {
    await refuse({ type: 'somethingNew' }, 'OCI_POLICY_REQUIREMENT_UNKNOWN');
    await refuse({ type: 'sigstoreSigned', keyPath: '/k', signedIdentity: { type: 'matchSomehow' } }, 'OCI_POLICY_REQUIREMENT_UNKNOWN');
  });
  test('malformed requirements and unreadable keys: REGISTRY_CONFIG_INVALID', async () => {
    await refuse({ type: 'sigstoreSigned' }, 'REGISTRY_CONFIG_INVALID');
    await refuse({ type: 'sigstoreSigned', keyPath: '/k', keyData: 'eA==' }, 'REGISTRY_CONFIG_INVALID');
    await refuse({ type: 'sigstoreSigned', keyPath: '/k', signedIdentity: { type: 'exactReference' } }, 'REGISTRY_CONFIG_INVALID');
  });
});
