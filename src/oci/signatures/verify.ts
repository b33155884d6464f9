/**
 * One signature candidate checked against the requirement's keys: the cryptographic signature
 * first, then what it signs (digest, identity). Sigstore bundles go through the sigstore
 * libraries (@sigstore/bundle validates the bundle, @sigstore/verify checks the DSSE signature),
 * which are loaded on the first bundle only; cosign's simple-signing payloads are verified with
 * node:crypto over the payload's exact bytes, as containers/image does.
 * @module
 */
import { verify as verifySignature, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { SignatureCandidate } from './find.ts';
import { parseIdentity, type DockerIdentity } from './identity.ts';
import type { TrustedKey } from './requirement.ts';

/** The in-toto predicate type of a cosign v3 image signature. */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const SIMPLE_SIGNING_TYPE = 'cosign container image signature';
const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** What a candidate proved, or why it proved nothing. */
export type CandidateOutcome =
  | { result: 'verified'; key: TrustedKey; digests: string[]; identity: DockerIdentity | undefined; format: 'simple-signing' | 'sigstore-bundle' }
  | { result: 'bad-signature'; problem: string };

const SimpleSigningPayload = z.object({
  critical: z.object({
    type: z.literal(SIMPLE_SIGNING_TYPE),
    image: z.object({ 'docker-manifest-digest': z.string().min(1) }),
    identity: z.object({ 'docker-reference': z.string().min(1) }),
  }),
});

const Statement = z.object({
  _type: z.string().regex(/^https:\/\/in-toto\.io\/Statement\/v(0\.1|1)$/),
  predicateType: z.string(),
  subject: z.array(z.object({ digest: z.record(z.string(), z.string()) })).min(1),
});

function hashFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256';
}

function simpleSigning(candidate: Extract<SignatureCandidate, { format: 'simple-signing' }>, keys: TrustedKey[]): CandidateOutcome {
  const signature = Buffer.from(candidate.signature, 'base64');
  const key = keys.find((k) => {
    try {
      return verifySignature(hashFor(k.key), candidate.payload, k.key, signature);
    } catch {
      return false;
    }
  });
  if (!key) return { result: 'bad-signature', problem: 'the signature does not verify with any trusted key' };
  let json: unknown;
  try {
    json = JSON.parse(candidate.payload.toString('utf8'));
  } catch {
    return { result: 'bad-signature', problem: 'the signed payload is not JSON' };
  }
  const payload = SimpleSigningPayload.safeParse(json);
  if (!payload.success) return { result: 'bad-signature', problem: `the signed payload is not a "${SIMPLE_SIGNING_TYPE}"` };
  const { critical } = payload.data;
  const identity = parseIdentity(critical.identity['docker-reference']);
  if (!identity) return { result: 'bad-signature', problem: 'the signed docker-reference is not a valid reference' };
  return { result: 'verified', key, digests: [critical.image['docker-manifest-digest']], identity, format: candidate.format };
}

type SigstoreLibraries = [typeof import('@sigstore/bundle'), typeof import('@sigstore/verify')];
let libraries: Promise<SigstoreLibraries> | undefined;

/** The sigstore libraries, loaded once and only when a bundle is to be verified. */
export function loadSigstore(): Promise<SigstoreLibraries> {
  libraries ??= Promise.all([import('@sigstore/bundle'), import('@sigstore/verify')]);
  return libraries;
}

function statementDigests(payload: Buffer): string[] | string {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return 'the DSSE payload is not JSON';
  }
  const statement = Statement.safeParse(json);
  if (!statement.success) return 'the DSSE payload is not an in-toto statement';
  if (statement.data.predicateType !== COSIGN_SIGN_PREDICATE) return `the statement is a "${statement.data.predicateType.slice(0, 100)}" attestation, not an image signature (${COSIGN_SIGN_PREDICATE})`;
  return statement.data.subject.flatMap((s) => Object.entries(s.digest).map(([alg, hex]) => `${alg}:${hex}`));
}

async function sigstoreBundle(candidate: Extract<SignatureCandidate, { format: 'sigstore-bundle' }>, keys: TrustedKey[]): Promise<CandidateOutcome> {
  const [{ bundleFromJSON, isBundleWithDsseEnvelope, isBundleWithPublicKey }, { Verifier, toSignedEntity }] = await loadSigstore();
  let bundle;
  try {
    bundle = bundleFromJSON(candidate.bundle);
  } catch (err) {
    return { result: 'bad-signature', problem: `not a valid sigstore bundle (${(err as Error).message.slice(0, 200)})` };
  }
  if (!isBundleWithPublicKey(bundle)) return { result: 'bad-signature', problem: 'a keyless bundle (certificate); the requirement trusts public keys only' };
  if (!isBundleWithDsseEnvelope(bundle)) return { result: 'bad-signature', problem: 'a message-signature bundle (a signed blob), not a DSSE image signature' };
  // The requirement names no Rekor key, so log entries and timestamps are not part of it (as in containers/image).
  const entity = { ...toSignedEntity(bundle), tlogEntries: [], timestamps: [] };
  const key = keys.find((k) => {
    const trust = {
      certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [],
      publicKey: () => ({ publicKey: k.key, validFor: () => true }),
    };
    try {
      new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(entity);
      return true;
    } catch {
      return false;
    }
  });
  if (!key) return { result: 'bad-signature', problem: 'the bundle\'s signature does not verify with any trusted key' };
  const envelope = bundle.content.dsseEnvelope;
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) return { result: 'bad-signature', problem: `the DSSE payload type is "${envelope.payloadType.slice(0, 100)}", not in-toto` };
  const digests = statementDigests(Buffer.from(envelope.payload));
  if (typeof digests === 'string') return { result: 'bad-signature', problem: digests };
  // A bundle names no image: it binds the digest only (see docs/oci-client.md, signatures).
  return { result: 'verified', key, digests, identity: undefined, format: candidate.format };
}

export async function checkCandidate(candidate: SignatureCandidate, keys: TrustedKey[]): Promise<CandidateOutcome> {
  switch (candidate.format) {
    case 'simple-signing': return simpleSigning(candidate, keys);
    case 'sigstore-bundle': return sigstoreBundle(candidate, keys);
    case 'unusable': return { result: 'bad-signature', problem: candidate.problem };
  }
}
