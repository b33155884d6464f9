/**
 * A step's pull secret, parsed once where the request is parsed: the credentials it holds for
 * the image's registry, and every string of it that logs and errors must mask.
 * @module
 */
import { credentialsFromPullSecret, parsePullSecret, type Credentials, type ImageReference, type PullSecretKind } from '../oci/index.ts';

export interface RegistryAuth {
  /** Credentials for the image's registry and repository, when the secret holds some. */
  credentials?: Credentials | undefined;
  /** The raw secret and each credential string, for masking. */
  secrets: string[];
  /** The shape that was recognised (safe to log); absent when the secret had no image to be parsed for. */
  shape?: PullSecretKind | undefined;
}

/** Every string of a credential, for masking in errors and logs. */
export function credentialSecrets(credentials: Credentials | undefined): string[] {
  if (!credentials) return [];
  if (credentials.type === 'basic') {
    return [credentials.password, Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')];
  }
  return [credentials.token];
}

/** Parses `pullSecret` (any shape `parsePullSecret` knows) for the registry of `ref`. */
export function registryAuth(pullSecret: string, ref: ImageReference): RegistryAuth {
  const secret = parsePullSecret(pullSecret);
  const credentials = credentialsFromPullSecret(secret, ref.registry, ref.repository);
  return { credentials, secrets: [pullSecret, ...credentialSecrets(credentials)], shape: secret.kind };
}
