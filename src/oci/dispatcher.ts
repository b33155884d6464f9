/**
 * One undici dispatcher per registry host: the host's CAs from `certs.d/<host:port>/` (added to
 * the system roots), client certificates, TLS ≥ 1.2, connect timeout, and HTTP(S)_PROXY/NO_PROXY.
 * Never the global dispatcher.
 * @module
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext, rootCertificates } from 'node:tls';
import { Agent, EnvHttpProxyAgent, type Dispatcher } from 'undici';
import { AgentError } from '../errors.ts';

export const DEFAULT_CERTS_DIRS = ['/etc/containers/certs.d', '/etc/docker/certs.d'];

export interface TlsMaterial {
  /** Extra CA certificates (PEM) trusted for this host. */
  ca: string[];
  cert?: string;
  key?: string;
  /** The directory they came from, for logs. */
  dir?: string;
}

// containers/image uses the first certs dir that has an entry for the host: *.crt are CAs,
// *.cert + *.key are a client certificate pair.
export async function loadHostTls(dirs: readonly string[], host: string): Promise<TlsMaterial> {
  for (const base of dirs) {
    const dir = join(base, host);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
      throw new AgentError('REGISTRY_CONFIG_INVALID', `Cannot list ${dir}`, { cause: err, details: { path: dir } });
    }
    const read = async (name: string): Promise<string> => {
      try {
        return await readFile(join(dir, name), 'utf8');
      } catch (err) {
        throw new AgentError('REGISTRY_CONFIG_INVALID', `Cannot read ${join(dir, name)}`, { cause: err, details: { path: join(dir, name) } });
      }
    };
    const material: TlsMaterial = { ca: [], dir };
    for (const name of names.filter((n) => n.endsWith('.crt'))) material.ca.push(await read(name));
    const cert = names.find((n) => n.endsWith('.cert'));
    if (cert) {
      const keyName = cert.replace(/\.cert$/, '.key');
      if (!names.includes(keyName)) {
        throw new AgentError('REGISTRY_CONFIG_INVALID', `${join(dir, cert)} has no matching ${keyName}`, { details: { path: dir } });
      }
      material.cert = await read(cert);
      material.key = await read(keyName);
    }
    return material;
  }
  return { ca: [] };
}

export interface DispatcherOptions {
  tls: TlsMaterial;
  /** Skip certificate verification (registries.conf `insecure = true`). */
  insecure: boolean;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Environment to read proxy settings from (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

function proxyEnv(env: NodeJS.ProcessEnv): { httpProxy?: string; httpsProxy?: string; noProxy?: string } | undefined {
  const get = (name: string): string | undefined => env[name.toLowerCase()] ?? env[name.toUpperCase()];
  const httpProxy = get('http_proxy');
  const httpsProxy = get('https_proxy');
  if (!httpProxy && !httpsProxy) return undefined;
  const noProxy = get('no_proxy');
  return {
    ...(httpProxy ? { httpProxy } : {}),
    ...(httpsProxy ? { httpsProxy } : {}),
    ...(noProxy !== undefined ? { noProxy } : {}),
  };
}

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  // One secure context for every connection of this dispatcher: given `ca`/`cert` instead,
  // Node builds a new context per connection, and with certs.d CAs that means parsing the whole
  // root store again (~0.1 s of CPU per connection).
  const secureContext = createSecureContext({
    ...(options.tls.ca.length > 0 ? { ca: [...rootCertificates, ...options.tls.ca] } : {}),
    ...(options.tls.cert ? { cert: options.tls.cert, key: options.tls.key } : {}),
    minVersion: 'TLSv1.2',
  });
  const tlsOptions = { secureContext, rejectUnauthorized: !options.insecure };
  const common = {
    connect: { ...tlsOptions, timeout: options.connectTimeoutMs },
    headersTimeout: options.headersTimeoutMs,
    bodyTimeout: options.bodyTimeoutMs,
  };
  const proxy = proxyEnv(options.env ?? process.env);
  if (!proxy) return new Agent(common);
  // Proxied https requests tunnel through CONNECT: the target's TLS settings go in requestTls.
  return new EnvHttpProxyAgent({ ...common, ...proxy, requestTls: tlsOptions });
}
