/**
 * Pull secrets as Ironic, Metal3 and operators hand them over. The shape is recognised
 * explicitly and named in `kind`, so callers can log which shape was found without the secret.
 * @module
 */
import { AgentError } from '../errors.ts';
import { findCredentials, parseAuthFile, splitUserPassword, type AuthFile, type Credentials } from './credentials.ts';

export type PullSecretKind =
  /** `{"auths": {...}}` (docker config / auth.json / dockerconfigjson) */
  | 'docker-config'
  /** the same JSON, base64-encoded (a Kubernetes secret's data value) */
  | 'docker-config-base64'
  /** `Bearer <token>` / `Basic <b64>`: a ready `Authorization` header value */
  | 'authorization-header'
  /** plain `user:pass` (Metal3 BMO ≥ 2026-07) */
  | 'user-password'
  /** base64(`user:pass`): a docker `auth` value (Ironic's documented `image_pull_secret`) */
  | 'docker-auth'
  /** base64(base64(`user:pass`)): Ironic's `oci_pull_secret` on the wire to the agent */
  | 'double-base64'
  /** base64 of a token: Ironic's wire format when the secret had no `user:` part */
  | 'base64-token'
  /** anything else without a colon: used as a registry bearer token */
  | 'bare-token';

export type PullSecret =
  | { kind: 'docker-config' | 'docker-config-base64'; authFile: AuthFile }
  | { kind: Exclude<PullSecretKind, 'docker-config' | 'docker-config-base64'>; credentials: Credentials };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const PRINTABLE = /^[\x20-\x7e]+$/;

function invalid(why: string): AgentError {
  return new AgentError('OCI_PULL_SECRET_INVALID', `The pull secret is not usable: ${why}`);
}

// Strict base64 that decodes to printable ASCII; random tokens usually decode to binary junk.
function decodePrintableBase64(value: string): string | undefined {
  if (value.length < 4 || !BASE64.test(value)) return undefined;
  const text = Buffer.from(value, 'base64').toString('latin1');
  return PRINTABLE.test(text) || text.trimStart().startsWith('{') ? text : undefined;
}

function parseConfigJson(text: string): AuthFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AgentError('OCI_PULL_SECRET_INVALID', 'The pull secret looks like JSON but does not parse', { cause: err });
  }
  try {
    return parseAuthFile(json, 'pull secret');
  } catch (err) {
    throw new AgentError('OCI_PULL_SECRET_INVALID', 'The pull secret JSON is not a docker config ({"auths": {...}})', { cause: err });
  }
}

function basic(text: string): Credentials | undefined {
  const user = splitUserPassword(text);
  return user ? { type: 'basic', ...user } : undefined;
}

/**
 * Recognise a pull secret's shape.
 * @example
 * parsePullSecret('dXNlcjpwYXNz') // → { kind: 'docker-auth', credentials: { type: 'basic', username: 'user', password: 'pass' } }
 */
export function parsePullSecret(value: string): PullSecret {
  const secret = value.trim();
  if (secret === '') throw invalid('it is empty');
  if (secret.startsWith('{')) return { kind: 'docker-config', authFile: parseConfigJson(secret) };

  const header = /^(bearer|basic)\s+(\S+)$/i.exec(secret);
  if (header) {
    const scheme = header[1]!.toLowerCase();
    const token = header[2]!;
    if (scheme === 'bearer') return { kind: 'authorization-header', credentials: { type: 'registry-token', token } };
    const creds = basic(Buffer.from(token, 'base64').toString('utf8'));
    if (!creds) throw invalid('the Basic header value does not decode to user:password');
    return { kind: 'authorization-header', credentials: creds };
  }

  if (secret.includes(':')) {
    return { kind: 'user-password', credentials: basic(secret)! };
  }

  const once = decodePrintableBase64(secret);
  if (once === undefined) return { kind: 'bare-token', credentials: { type: 'registry-token', token: secret } };
  if (once.trimStart().startsWith('{')) return { kind: 'docker-config-base64', authFile: parseConfigJson(once) };
  const direct = basic(once);
  if (direct) return { kind: 'docker-auth', credentials: direct };
  const twice = decodePrintableBase64(once);
  const nested = twice === undefined ? undefined : basic(twice);
  if (nested) return { kind: 'double-base64', credentials: nested };
  return { kind: 'base64-token', credentials: { type: 'registry-token', token: once } };
}

/** The credentials a parsed secret holds for one registry/repository (a docker config is looked up). */
export function credentialsFromPullSecret(secret: PullSecret, registry: string, repository: string): Credentials | undefined {
  return 'authFile' in secret ? findCredentials(secret.authFile, registry, repository) : secret.credentials;
}
