/**
 * What a step reports of the signatures policy.json required and the OCI client verified: one
 * progress line each, and the `signatures` field of the command result.
 * @module
 */
import type { SignatureVerification } from '../oci/index.ts';
import type { StepRun } from './phased-step.ts';

/** The result's `signatures` entries, in the snake_case of every other result field. */
export function signaturesResult(verified: readonly SignatureVerification[] | undefined): Record<string, unknown>[] {
  return (verified ?? []).map((s) => ({
    requirement: s.requirement,
    scope: s.scope,
    signed_identity: s.signedIdentity,
    key_fingerprint: s.keyFingerprint,
    key_source: s.keySource,
    format: s.format,
    found_in: s.foundIn,
    digest: s.digest,
    ...(s.signedReference ? { signed_reference: s.signedReference } : {}),
  }));
}

/** One progress report per verified signature, in the current phase. */
export function reportSignatures(run: StepRun<string>, verified: readonly SignatureVerification[] | undefined): void {
  for (const s of verified ?? []) {
    run.report(`signature verified: ${s.requirement} (scope ${s.scope}) key ${s.keyFingerprint} found in ${s.foundIn}`, {
      signature: { key_fingerprint: s.keyFingerprint, found_in: s.foundIn, format: s.format },
    });
  }
}
