/**
 * Digests: strict validation (before a digest ever becomes a URL path segment, CVE-2024-3727)
 * and hashing of raw bytes.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { AgentError } from '../errors.ts';

export type DigestAlgorithm = 'sha256' | 'sha512';

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  encoded: string;
}

// image-spec descriptor.md: the general grammar, then the registered algorithms' encodings.
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const ENCODED: Record<DigestAlgorithm, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

/** The digest of the empty JSON object `{}` (image-spec "empty descriptor"). */
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

export function isSupportedDigest(value: string): boolean {
  return tryParseDigest(value) !== undefined;
}

export function tryParseDigest(value: string): ParsedDigest | undefined {
  if (!DIGEST_GRAMMAR.test(value)) return undefined;
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return undefined;
  return ENCODED[algorithm].test(encoded) ? { algorithm, encoded } : undefined;
}

/** Throws OCI_REFERENCE_INVALID unless `value` is a well-formed sha256/sha512 digest. */
export function parseDigest(value: string): ParsedDigest {
  const parsed = tryParseDigest(value);
  if (!parsed) {
    const grammar = DIGEST_GRAMMAR.test(value);
    throw new AgentError(
      'OCI_REFERENCE_INVALID',
      grammar ? `Unsupported or malformed digest (only sha256 and sha512 can be verified): ${value.slice(0, 150)}`
        : `Malformed digest: ${value.slice(0, 150)}`,
      { details: { digest: value.slice(0, 150) } },
    );
  }
  return parsed;
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

export function createDigestHash(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

/** Throws OCI_DIGEST_MISMATCH when the raw bytes do not hash to `expected`. */
export function verifyBytes(bytes: Uint8Array, expected: string, what: string): void {
  const { algorithm } = parseDigest(expected);
  const actual = digestOf(bytes, algorithm);
  if (actual !== expected) {
    throw new AgentError('OCI_DIGEST_MISMATCH', `${what}: digest mismatch (expected ${expected}, got ${actual})`, {
      details: { expected, actual },
    });
  }
}
