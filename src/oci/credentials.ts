/**
 * Registry credentials and their lookup in docker `config.json` / containers `auth.json`:
 * most specific key first, exact host matching only, Docker Hub aliases, legacy `https://…/v1/` keys.
 * Credential helpers are never run.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import { isDockerHub } from './reference.ts';

export type Credentials =
  | { type: 'basic'; username: string; password: string }
  /** An OAuth2 refresh token (`identitytoken`), exchanged at the realm by POST. */
  | { type: 'identity-token'; token: string; username?: string }
  /** A ready bearer token (`registrytoken`), sent to the registry as is. */
  | { type: 'registry-token'; token: string };

const AuthEntry = z.object({
  auth: z.string().optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  identitytoken: z.string().optional(),
  registrytoken: z.string().optional(),
});
export const AuthFile = z.object({ auths: z.record(z.string(), AuthEntry) });
export type AuthFile = z.infer<typeof AuthFile>;

/** Accepts `{auths: {...}}` and the legacy `.dockercfg` shape (a bare host map). */
export function parseAuthFile(value: unknown, source: string): AuthFile {
  const obj = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  const candidate = obj && !('auths' in obj) && Object.values(obj).every((v) => typeof v === 'object' && v !== null)
    ? { auths: obj } : value;
  const parsed = AuthFile.safeParse(candidate);
  if (!parsed.success) {
    throw new AgentError('REGISTRY_CONFIG_INVALID', `${source} is not a docker config / auth.json document`, {
      details: { source },
    });
  }
  return parsed.data;
}

/** Split `user:pass` at the first colon (passwords may contain colons). */
export function splitUserPassword(text: string): { username: string; password: string } | undefined {
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  // containers/image trims NUL bytes that some tools leave around the password.
  return { username: text.slice(0, colon), password: text.slice(colon + 1).replace(/^\0+|\0+$/g, '') };
}

// An entry that does not decode (e.g. `{}` left by a credential helper) yields nothing.
function decodeEntry(entry: z.infer<typeof AuthEntry>): Credentials | undefined {
  if (entry.registrytoken) return { type: 'registry-token', token: entry.registrytoken };
  let user: { username: string; password: string } | undefined;
  if (entry.auth) user = splitUserPassword(Buffer.from(entry.auth, 'base64').toString('utf8'));
  else if (entry.username !== undefined && entry.password !== undefined) user = { username: entry.username, password: entry.password };
  if (entry.identitytoken) {
    return user?.username ? { type: 'identity-token', token: entry.identitytoken, username: user.username } : { type: 'identity-token', token: entry.identitytoken };
  }
  if (user && (user.username !== '' || user.password !== '')) return { type: 'basic', ...user };
  return undefined;
}

function normaliseKey(key: string): string {
  let host = key.replace(/^https?:\/\//i, '');
  const slash = host.indexOf('/');
  if (slash >= 0) host = host.slice(0, slash);
  host = host.toLowerCase();
  return isDockerHub(host) ? 'docker.io' : host;
}

/** Credentials for `registry/repository` from one file, or undefined. */
export function findCredentials(file: AuthFile, registry: string, repository: string): Credentials | undefined {
  const hosts = isDockerHub(registry) ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [registry.toLowerCase()];
  const parts = repository.split('/');
  for (const host of hosts) {
    for (let n = parts.length; n >= 0; n--) {
      const key = n === 0 ? host : `${host}/${parts.slice(0, n).join('/')}`;
      const entry = file.auths[key];
      const creds = entry && decodeEntry(entry);
      if (creds) return creds;
    }
  }
  const wanted = normaliseKey(registry);
  for (const [key, entry] of Object.entries(file.auths)) {
    if (normaliseKey(key) !== wanted) continue;
    const creds = decodeEntry(entry);
    if (creds) return creds;
  }
  return undefined;
}

/** The files podman reads, in its order (an explicit `REGISTRY_AUTH_FILE` disables the rest). */
export function defaultAuthFilePaths(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env['REGISTRY_AUTH_FILE']) return [env['REGISTRY_AUTH_FILE']];
  const home = env['HOME'] ?? '/root';
  const paths: string[] = [];
  if (env['XDG_RUNTIME_DIR']) paths.push(join(env['XDG_RUNTIME_DIR'], 'containers/auth.json'));
  else paths.push('/run/containers/0/auth.json');
  paths.push(join(env['XDG_CONFIG_HOME'] ?? join(home, '.config'), 'containers/auth.json'));
  paths.push(join(env['DOCKER_CONFIG'] ?? join(home, '.docker'), 'config.json'));
  return paths;
}

/** Reads the files that exist; a present but unparsable file is an error, a missing one is not. */
export async function loadAuthFiles(paths: readonly string[]): Promise<AuthFile[]> {
  const files: AuthFile[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new AgentError('REGISTRY_CONFIG_INVALID', `Cannot read auth file ${path}`, { cause: err, details: { path } });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new AgentError('REGISTRY_CONFIG_INVALID', `Auth file ${path} is not JSON`, { cause: err, details: { path } });
    }
    files.push(parseAuthFile(json, path));
  }
  return files;
}

export function findCredentialsInFiles(files: readonly AuthFile[], registry: string, repository: string): Credentials | undefined {
  for (const file of files) {
    const creds = findCredentials(file, registry, repository);
    if (creds) return creds;
  }
  return undefined;
}
