/**
 * Verification of the `sigstoreSigned` requirements policy.json sets for one image: the
 * signatures of the resolved digest are found once, then every requirement must be met by at
 * least one signature made with one of its keys, for this digest, naming an identity its
 * `signedIdentity` accepts. Loaded by the client only when a policy asks for signatures.
 * @module
 */
import { AgentError, type ErrorCode } from '../../errors.ts';
import type { ImageReference } from '../reference.ts';
import type { RegistrySession } from '../session.ts';
import { findSignatures, type FoundSignatures, type SignatureCandidate } from './find.ts';
import { describeIdentity, formatIdentity, identityMatches, type DockerIdentity } from './identity.ts';
import { loadTrustedKeys, type SigstoreRequirement, type TrustedKey } from './requirement.ts';
import { checkCandidate } from './verify.ts';

/** What was verified for one requirement (reported by the steps and `bootc-agent fetch`). */
export interface SignatureVerification {
  requirement: 'sigstoreSigned';
  /** The policy.json scope the requirement came from. */
  scope: string;
  /** The requirement's `signedIdentity`, in words. */
  signedIdentity: string;
  /** `sha256:<hex>` of the trusted key that verified the signature, and where the key came from. */
  keyFingerprint: string;
  keySource: string;
  /** `simple-signing` (cosign's payload) or `sigstore-bundle` (a v0.3 bundle with a DSSE statement). */
  format: 'simple-signing' | 'sigstore-bundle';
  /** Where the signature was found: `tag sha256-….sig`, `referrer sha256:… (referrers API)` or `(referrers tag sha256-…)`. */
  foundIn: string;
  /** The manifest digest the signature signs (the one resolved, pulled and installed). */
  digest: string;
  /** The image the signature names (`docker-reference`); absent for bundles, which name none. */
  signedReference?: string;
}

export interface VerifyContext {
  session: RegistrySession;
  /** The reference as given (with a digest only when the user wrote one). */
  reference: ImageReference;
  /** The digest the reference resolved to. */
  digest: string;
  signal?: AbortSignal | undefined;
}

interface Failure {
  code: ErrorCode;
  foundIn: string;
  format: SignatureCandidate['format'];
  problem: string;
}

// The failure closest to success decides the code: a trusted key signed … for another identity.
const RANK: readonly ErrorCode[] = ['OCI_SIGNATURE_IDENTITY_MISMATCH', 'OCI_SIGNATURE_DIGEST_MISMATCH', 'OCI_SIGNATURE_INVALID'];

function imageIdentity(ref: ImageReference): DockerIdentity {
  const name = `${ref.registry}/${ref.repository}`;
  return ref.digest ? { name, digest: ref.digest } : { name, tag: ref.tag ?? 'latest' };
}

async function meet(req: SigstoreRequirement, keys: TrustedKey[], found: FoundSignatures, ctx: VerifyContext): Promise<SignatureVerification | Failure[]> {
  const image = imageIdentity(ctx.reference);
  const failures: Failure[] = [];
  for (const candidate of found.candidates) {
    const outcome = await checkCandidate(candidate, keys);
    const base = { foundIn: candidate.foundIn, format: candidate.format };
    if (outcome.result === 'bad-signature') {
      failures.push({ ...base, code: 'OCI_SIGNATURE_INVALID', problem: outcome.problem });
      continue;
    }
    const signedFor = `signed with ${outcome.key.fingerprint} (${outcome.key.source})`;
    if (!outcome.digests.includes(ctx.digest)) {
      failures.push({ ...base, code: 'OCI_SIGNATURE_DIGEST_MISMATCH', problem: `${signedFor} for ${outcome.digests.join(', ').slice(0, 300)}` });
      continue;
    }
    // A bundle names no image; it counts as naming the repository it is attached to.
    const signed = outcome.identity ?? { name: image.name };
    if (!identityMatches(req.signedIdentity, image, signed)) {
      failures.push({ ...base, code: 'OCI_SIGNATURE_IDENTITY_MISMATCH', problem: `${signedFor} names ${formatIdentity(signed)}${outcome.identity ? '' : ' (a bundle: the repository it is attached to)'}` });
      continue;
    }
    return {
      requirement: 'sigstoreSigned', scope: req.scope, signedIdentity: describeIdentity(req.signedIdentity),
      keyFingerprint: outcome.key.fingerprint, keySource: outcome.key.source, format: outcome.format,
      foundIn: candidate.foundIn, digest: ctx.digest,
      ...(outcome.identity ? { signedReference: formatIdentity(outcome.identity) } : {}),
    };
  }
  return failures;
}

function refusal(req: SigstoreRequirement, keys: TrustedKey[], found: FoundSignatures, failures: Failure[], ctx: VerifyContext): AgentError {
  const reference = formatIdentity(imageIdentity(ctx.reference));
  const code = RANK.find((c) => failures.some((f) => f.code === c)) ?? 'OCI_SIGNATURE_MISSING';
  const keyNames = keys.map((k) => `${k.fingerprint} (${k.source})`).join(', ');
  const rule = describeIdentity(req.signedIdentity);
  const first = failures.find((f) => f.code === code);
  const message = code === 'OCI_SIGNATURE_MISSING'
    ? `No signature for ${reference}@${ctx.digest} found (${found.searched.join('; ')}); policy.json scope "${req.scope}" requires sigstoreSigned by ${keyNames}`
    : `No signature for ${reference}@${ctx.digest} satisfies policy.json scope "${req.scope}" (sigstoreSigned by ${keyNames}, signedIdentity ${rule}): ${first?.foundIn}: ${first?.problem}`;
  return new AgentError(code, message, {
    details: {
      reference, digest: ctx.digest, scope: req.scope, requirement: 'sigstoreSigned', signed_identity: rule,
      keys: keys.map((k) => ({ fingerprint: k.fingerprint, source: k.source })),
      searched: found.searched,
      signatures: failures.slice(0, 10).map((f) => ({ found_in: f.foundIn, format: f.format, failure: f.code, problem: f.problem })),
    },
  });
}

/** Verify every requirement; throws the first one no signature meets. */
export async function verifySignatures(requirements: SigstoreRequirement[], ctx: VerifyContext): Promise<SignatureVerification[]> {
  if (!requirements.length) return [];
  const found = await findSignatures(ctx.session, ctx.digest, ctx.signal);
  const verified: SignatureVerification[] = [];
  for (const req of requirements) {
    const keys = await loadTrustedKeys(req);
    const outcome = await meet(req, keys, found, ctx);
    if (!Array.isArray(outcome)) verified.push(outcome);
    else throw refusal(req, keys, found, outcome, ctx);
  }
  return verified;
}

export { parseSigstoreRequirement, type SigstoreRequirement } from './requirement.ts';
