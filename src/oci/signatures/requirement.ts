/**
 * A `sigstoreSigned` requirement of containers-policy.json(5), parsed: which public keys it
 * trusts and which `signedIdentity` it wants. Keyless trust (`fulcio`, `pki`) and Rekor
 * inclusion (`rekorPublicKey*`) are refused with OCI_SIGNATURE_REQUIRED: the agent verifies
 * key-based signatures only, and a requirement it cannot check in full is never half-checked.
 * @module
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { AgentError } from '../../errors.ts';

const Prefix = z.string().min(1);
export const SignedIdentity = z.discriminatedUnion('type', [
  z.object({ type: z.literal('matchExact') }).strict(),
  z.object({ type: z.literal('matchRepoDigestOrExact') }).strict(),
  z.object({ type: z.literal('matchRepository') }).strict(),
  z.object({ type: z.literal('exactReference'), dockerReference: z.string().min(1) }).strict(),
  z.object({ type: z.literal('exactRepository'), dockerRepository: z.string().min(1) }).strict(),
  z.object({ type: z.literal('remapIdentity'), prefix: Prefix, signedPrefix: Prefix }).strict(),
]);
export type SignedIdentity = z.infer<typeof SignedIdentity>;

const IDENTITY_TYPES = new Set(['matchExact', 'matchRepoDigestOrExact', 'matchRepository', 'exactReference', 'exactRepository', 'remapIdentity']);
const KEY_FIELDS = ['keyPath', 'keyPaths', 'keyData', 'keyDatas'] as const;
const KEYLESS_FIELDS = ['fulcio', 'pki'] as const;
const REKOR_FIELDS = ['rekorPublicKeyPath', 'rekorPublicKeyPaths', 'rekorPublicKeyData', 'rekorPublicKeyDatas'] as const;

const SigstoreSigned = z.object({
  type: z.literal('sigstoreSigned'),
  keyPath: z.string().min(1).optional(),
  keyPaths: z.array(z.string().min(1)).min(1).optional(),
  keyData: z.string().min(1).optional(),
  keyDatas: z.array(z.string().min(1)).min(1).optional(),
  signedIdentity: z.unknown().optional(),
}).loose();

/** A public key the requirement trusts, and how it is named in progress, results and errors. */
export interface TrustedKey {
  key: KeyObject;
  /** `sha256:<hex>` of the key's SubjectPublicKeyInfo (DER). */
  fingerprint: string;
  /** Where the key came from: the file, or `keyData[<n>]`. */
  source: string;
}

/** A `sigstoreSigned` requirement whose keys are still to be read. */
export interface SigstoreRequirement {
  type: 'sigstoreSigned';
  /** Policy scope the requirement came from. */
  scope: string;
  keyPaths: string[];
  keyDatas: string[];
  signedIdentity: SignedIdentity;
}

function configError(message: string, scope: string): AgentError {
  return new AgentError('REGISTRY_CONFIG_INVALID', `policy.json: ${message}`, { details: { scope, requirement: 'sigstoreSigned' } });
}

/** Validate one `sigstoreSigned` object (no file is read here). */
export function parseSigstoreRequirement(raw: Record<string, unknown>, scope: string, reference: string): SigstoreRequirement {
  const keyless = KEYLESS_FIELDS.filter((f) => raw[f] !== undefined);
  const rekor = REKOR_FIELDS.filter((f) => raw[f] !== undefined);
  if (keyless.length || rekor.length) {
    const what = [...keyless, ...rekor].join(', ');
    throw new AgentError('OCI_SIGNATURE_REQUIRED',
      `policy.json requires a sigstoreSigned signature for ${reference} with ${what}; this agent verifies key-based signatures only (keyPath, keyPaths, keyData, keyDatas) and refuses what it cannot check`,
      { details: { reference, scope, requirement: 'sigstoreSigned', unsupported: [...keyless, ...rekor] } });
  }
  const parsed = SigstoreSigned.safeParse(raw);
  if (!parsed.success) throw configError(`a sigstoreSigned requirement of scope "${scope}" is malformed (${parsed.error.issues[0]?.message ?? 'invalid'})`, scope);
  const r = parsed.data;
  const given = KEY_FIELDS.filter((f) => r[f] !== undefined);
  if (given.length !== 1) throw configError(`a sigstoreSigned requirement of scope "${scope}" needs exactly one of ${KEY_FIELDS.join(', ')}`, scope);
  const identityRaw = r.signedIdentity ?? { type: 'matchRepoDigestOrExact' };
  const identityType = (identityRaw as { type?: unknown }).type;
  if (typeof identityType === 'string' && !IDENTITY_TYPES.has(identityType)) {
    throw new AgentError('OCI_POLICY_REQUIREMENT_UNKNOWN', `policy.json has an unknown signedIdentity type "${identityType.slice(0, 100)}" for ${reference}`, {
      details: { reference, scope, requirement: 'sigstoreSigned', signed_identity: identityType.slice(0, 100) },
    });
  }
  const identity = SignedIdentity.safeParse(identityRaw);
  if (!identity.success) throw configError(`the signedIdentity of a sigstoreSigned requirement of scope "${scope}" is malformed`, scope);
  return {
    type: 'sigstoreSigned', scope, signedIdentity: identity.data,
    keyPaths: r.keyPath !== undefined ? [r.keyPath] : r.keyPaths ?? [],
    keyDatas: r.keyData !== undefined ? [r.keyData] : r.keyDatas ?? [],
  };
}

function toKey(pem: Buffer | string, source: string, scope: string): TrustedKey {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new AgentError('REGISTRY_CONFIG_INVALID', `policy.json: ${source} is not a PEM public key`, { cause: err, details: { scope, key: source } });
  }
  const der = key.export({ type: 'spki', format: 'der' });
  return { key, source, fingerprint: `sha256:${createHash('sha256').update(der).digest('hex')}` };
}

/** Read and parse the requirement's keys (keyData is the base64 of a key file, as in containers/image). */
export async function loadTrustedKeys(req: SigstoreRequirement): Promise<TrustedKey[]> {
  const keys: TrustedKey[] = [];
  for (const path of req.keyPaths) {
    let pem: Buffer;
    try {
      pem = await readFile(path);
    } catch (err) {
      throw new AgentError('REGISTRY_CONFIG_INVALID', `policy.json: cannot read the public key ${path}`, { cause: err, details: { scope: req.scope, key: path } });
    }
    keys.push(toKey(pem, path, req.scope));
  }
  req.keyDatas.forEach((data, i) => keys.push(toKey(Buffer.from(data, 'base64'), `keyData[${i}]`, req.scope)));
  return keys;
}
