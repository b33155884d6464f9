/**
 * The containers-auth.json content podman reads for one pull: only the registry being pulled
 * from, never the whole pull secret.
 * @module
 */
import type { Credentials } from '../oci/index.ts';

export function podmanAuthJson(registry: string, credentials: Credentials): string {
  const entry = credentials.type === 'basic'
    ? { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') }
    // containers-auth.json has no bearer-token field: podman presents a token through the
    // OAuth2 identity-token flow, which registries that issued the token accept.
    : { auth: Buffer.from(`${credentials.type === 'identity-token' ? credentials.username ?? '<token>' : '<token>'}:`).toString('base64'), identitytoken: credentials.token };
  return JSON.stringify({ auths: { [registry]: entry } });
}
