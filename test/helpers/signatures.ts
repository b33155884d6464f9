/**
 * Signatures made in tests: a key pair, cosign's simple-signing payload and its `.sig` tag
 * manifest, sigstore v0.3 bundles built through the sigstore libraries' own types
 * (@sigstore/bundle's toDSSEBundle, @sigstore/core's DSSE pre-authentication encoding), and
 * referrer manifests pushed with or without the referrers tag fallback.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { bundleToJSON, toDSSEBundle } from '@sigstore/bundle';
import { dsse } from '@sigstore/core';
import type { PushedDescriptor, TestRegistry } from './registry.ts';

export const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

export interface TestKey {
  privateKey: KeyObject;
  publicPem: string;
}

export function makeKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** cosign's payload: `docker-reference` is the repository, as cosign writes it. */
export function simplePayload(dockerReference: string, digest: string): Buffer {
  return Buffer.from(JSON.stringify({
    critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
    optional: null,
  }));
}

export function signPayload(key: TestKey, payload: Buffer): string {
  return sign('sha256', payload, key.privateKey).toString('base64');
}

async function emptyConfig(reg: TestRegistry, repo: string) {
  const pushed = await reg.pushBlob(repo, Buffer.from('{}'));
  return { mediaType: 'application/vnd.oci.empty.v1+json', ...pushed };
}

/** cosign's tag scheme: `sha256-<hex>.sig` with one simple-signing layer per signature. */
export async function pushSigTag(reg: TestRegistry, repo: string, digest: string, signatures: { payload: Buffer; signature: string }[]): Promise<PushedDescriptor> {
  const layers = [];
  for (const s of signatures) {
    const blob = await reg.pushBlob(repo, s.payload);
    layers.push({ mediaType: SIMPLE_SIGNING, ...blob, annotations: { 'dev.cosignproject.cosign/signature': s.signature } });
  }
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: await emptyConfig(reg, repo), layers });
  return reg.pushManifest(repo, `${digest.replace(':', '-')}.sig`, manifest, 'application/vnd.oci.image.manifest.v1+json');
}

/** A v0.3 bundle as cosign v3 writes for an image: DSSE over an in-toto statement naming the digest. */
export function makeBundle(key: TestKey, digest: string, predicateType = SIGN_PREDICATE): unknown {
  const [alg, hex] = digest.split(':') as [string, string];
  const statement = Buffer.from(JSON.stringify({
    _type: 'https://in-toto.io/Statement/v1', subject: [{ digest: { [alg]: hex } }], predicateType, predicate: {},
  }));
  const payloadType = 'application/vnd.in-toto+json';
  const signature = sign('sha256', dsse.preAuthEncoding(payloadType, statement), key.privateKey);
  return bundleToJSON(toDSSEBundle({ artifact: statement, artifactType: payloadType, signature, keyHint: '' }));
}

/** A referrer manifest (subject = the image) holding `bundle`; with `fallbackTag`, also the referrers tag index. */
export async function pushBundleReferrer(reg: TestRegistry, repo: string, subject: PushedDescriptor, bundle: unknown, fallbackTag: boolean): Promise<PushedDescriptor> {
  const layer = await reg.pushBlob(repo, Buffer.from(JSON.stringify(bundle)));
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: BUNDLE_V03,
    config: await emptyConfig(reg, repo), layers: [{ mediaType: BUNDLE_V03, ...layer }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { 'dev.sigstore.bundle.content': 'dsse-envelope', 'dev.sigstore.bundle.predicateType': SIGN_PREDICATE },
  });
  const pushed = await reg.pushManifest(repo, `bundle-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, manifest, 'application/vnd.oci.image.manifest.v1+json');
  const descriptor = { ...pushed, artifactType: BUNDLE_V03 };
  if (fallbackTag) {
    const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [descriptor] });
    await reg.pushManifest(repo, subject.digest.replace(':', '-'), index, 'application/vnd.oci.image.index.v1+json');
  }
  return descriptor;
}
