/**
 * A real Debian `docker-registry` per test file: 127.0.0.1, a free port, TLS with a throwaway
 * self-signed certificate, htpasswd (bcrypt) or token auth, plus push helpers that use the
 * registry HTTP API (blobs, images, artifacts, indexes). `stop()` kills only its own process.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { startTokenServer, type TokenServer } from './token-server.ts';

const run = promisify(execFile);
export const REGISTRY_BIN = '/usr/bin/docker-registry';

/** Why registry tests cannot run here, or undefined when they can. */
export function registryUnavailable(): string | undefined {
  for (const bin of [REGISTRY_BIN, '/usr/bin/openssl', '/usr/bin/htpasswd']) {
    if (!existsSync(bin)) return `${bin.split('/').pop()} not installed`;
  }
  return undefined;
}

export interface TestCertificate {
  dir: string;
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
}

/** A self-signed certificate for 127.0.0.1/localhost, made by openssl in `dir`. */
export async function createTestCertificate(dir: string): Promise<TestCertificate> {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-keyout', keyPath, '-out', certPath,
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  return { dir, certPath, keyPath, cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
}

/** A certs.d-style tree `<dir>/<host>/ca.crt` for the client's `certsDirs`. */
export async function writeCertsDir(dir: string, host: string, caPem: string): Promise<string> {
  await mkdir(join(dir, host), { recursive: true });
  await writeFile(join(dir, host, 'ca.crt'), caPem);
  return dir;
}

export interface PushedDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
  artifactType?: string;
}

export interface TestRegistry {
  host: string;
  url: string;
  username: string;
  password: string;
  auth: 'basic' | 'token' | 'none';
  cert: TestCertificate;
  /** A directory usable as the client's `certsDirs` entry (holds `<host>/ca.crt`). */
  certsDir: string;
  tokenServer?: TokenServer;
  pushBlob(repo: string, bytes: Buffer, algorithm?: 'sha256' | 'sha512'): Promise<{ digest: string; size: number }>;
  pushManifest(repo: string, ref: string, body: string | Buffer, mediaType: string): Promise<PushedDescriptor>;
  /** Installs the CA as /etc/containers/certs.d/<host:port>/ca.crt for podman; returns the cleanup. */
  installCaForPodman(root?: string): Promise<() => Promise<void>>;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  auth?: 'basic' | 'token' | 'none';
  username?: string;
  password?: string;
  /** Token auth: let anonymous clients pull. */
  anonymousPull?: boolean;
}

/** A loopback TCP port that was free a moment ago (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitReady(url: string, agent: Agent, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      const res = await request(`${url}/v2/`, { dispatcher: agent });
      await res.body.dump();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

export async function startRegistry(options: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'basic';
  const username = options.username ?? 'testuser';
  const password = options.password ?? 'testpass';
  const dir = await mkdtemp(join(tmpdir(), 'oci-registry-'));
  const cert = await createTestCertificate(dir);
  const { stdout: htpasswd } = await run('htpasswd', ['-Bbn', username, password]);
  await writeFile(join(dir, 'htpasswd'), htpasswd);
  const agent = new Agent({ connect: { ca: cert.cert } });
  const service = 'test-registry';
  const tokenServer = auth === 'token'
    ? await startTokenServer({ cert: cert.cert, key: cert.key, service, issuer: 'test-issuer', users: { [username]: password }, anonymousPull: options.anonymousPull ?? false })
    : undefined;
  const authYaml = auth === 'basic' ? `auth:\n  htpasswd: {realm: basic-realm, path: ${join(dir, 'htpasswd')}}\n`
    : auth === 'token' ? `auth:\n  token: {realm: "${tokenServer!.realm}", service: ${service}, issuer: test-issuer, rootcertbundle: ${cert.certPath}}\n`
    : '';
  let child: ChildProcess | undefined;
  let host = '';
  for (let attempt = 0; attempt < 5 && !host; attempt++) {
    const port = await freePort();
    await writeFile(join(dir, 'config.yml'), `version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n`
      + `storage:\n  filesystem: {rootdirectory: ${join(dir, 'data')}}\n  delete: {enabled: true}\n`
      + `http:\n  addr: 127.0.0.1:${port}\n  tls: {certificate: ${cert.certPath}, key: ${cert.keyPath}}\n${authYaml}`);
    child = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.resume();
    if (await waitReady(`https://127.0.0.1:${port}`, agent, child)) host = `127.0.0.1:${port}`;
    else child.kill('SIGKILL');
  }
  if (!host || !child) throw new Error('docker-registry did not start');
  const proc = child;
  const url = `https://${host}`;
  const certsDir = await writeCertsDir(join(dir, 'certs.d'), host, cert.cert);
  // The token server is another origin: the client needs its CA too (certs.d is per host:port).
  if (tokenServer) await writeCertsDir(certsDir, new URL(tokenServer.realm).host, cert.cert);

  const authorization = (repo: string): string | undefined => {
    if (auth === 'basic') return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    if (auth === 'token') return `Bearer ${tokenServer!.issue(username, [`repository:${repo}:pull,push`])}`;
    return undefined;
  };
  const headers = (repo: string, extra: Record<string, string> = {}): Record<string, string> => {
    const a = authorization(repo);
    return { ...extra, ...(a ? { authorization: a } : {}) };
  };

  const pushBlob: TestRegistry['pushBlob'] = async (repo, bytes, algorithm = 'sha256') => {
    const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
    const start = await request(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST', dispatcher: agent, headers: headers(repo) });
    await start.body.dump();
    if (start.statusCode !== 202) throw new Error(`upload start: HTTP ${start.statusCode}`);
    const location = new URL(String(start.headers.location), url);
    location.searchParams.set('digest', digest);
    const put = await request(location, {
      method: 'PUT', dispatcher: agent, body: bytes,
      headers: headers(repo, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) }),
    });
    const text = await put.body.text();
    if (put.statusCode !== 201) throw new Error(`blob upload: HTTP ${put.statusCode} ${text}`);
    return { digest, size: bytes.length };
  };

  const pushManifest: TestRegistry['pushManifest'] = async (repo, ref, body, mediaType) => {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const res = await request(`${url}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT', dispatcher: agent, body: bytes, headers: headers(repo, { 'content-type': mediaType }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 201) throw new Error(`manifest push: HTTP ${res.statusCode} ${text}`);
    return { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
  };

  return {
    host, url, username, password, auth, cert, certsDir, pushBlob, pushManifest,
    ...(tokenServer ? { tokenServer } : {}),
    async installCaForPodman(root = '/etc/containers/certs.d') {
      const target = join(root, host);
      await mkdir(target, { recursive: true });
      await writeFile(join(target, 'ca.crt'), cert.cert);
      return () => rm(target, { recursive: true, force: true });
    },
    async stop() {
      // A process that already died (even from a signal: exitCode stays null then) has nothing to wait for.
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        await exited;
      }
      await tokenServer?.close();
      await agent.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface LayerInput {
  bytes: Buffer;
  mediaType?: string;
  annotations?: Record<string, string>;
  algorithm?: 'sha256' | 'sha512';
}

/** Push config + layers + an OCI image manifest; the returned descriptor carries `platform` for indexes. */
export async function pushImage(
  reg: TestRegistry, repo: string, ref: string,
  image: { layers: LayerInput[]; platform?: { architecture: string; os: string; variant?: string }; labels?: Record<string, string>; annotations?: Record<string, string> },
): Promise<PushedDescriptor> {
  const platform = image.platform ?? { architecture: 'amd64', os: 'linux' };
  const config = Buffer.from(JSON.stringify({ ...platform, config: { Labels: image.labels ?? {} }, rootfs: { type: 'layers', diff_ids: [] } }));
  const configDesc = await reg.pushBlob(repo, config);
  const layers = [];
  for (const layer of image.layers) {
    const pushed = await reg.pushBlob(repo, layer.bytes, layer.algorithm);
    layers.push({ mediaType: layer.mediaType ?? 'application/vnd.oci.image.layer.v1.tar+gzip', ...pushed, ...(layer.annotations ? { annotations: layer.annotations } : {}) });
  }
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configDesc }, layers,
    ...(image.annotations ? { annotations: image.annotations } : {}),
  });
  const pushed = await reg.pushManifest(repo, ref, manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { ...pushed, platform };
}

/** Push a one-file artifact the way ORAS does (empty config, `artifactType`, title annotation). */
export async function pushArtifact(
  reg: TestRegistry, repo: string, ref: string,
  artifact: { bytes: Buffer; title: string; mediaType?: string; artifactType?: string; annotations?: Record<string, string> },
): Promise<PushedDescriptor> {
  const empty = await reg.pushBlob(repo, Buffer.from('{}'));
  const layer = await reg.pushBlob(repo, artifact.bytes);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: artifact.artifactType ?? 'application/vnd.unknown.artifact.v1',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty, data: 'e30=' },
    layers: [{ mediaType: artifact.mediaType ?? 'application/vnd.oci.image.layer.v1.tar', ...layer, annotations: { 'org.opencontainers.image.title': artifact.title } }],
    ...(artifact.annotations ? { annotations: artifact.annotations } : {}),
  });
  const pushed = await reg.pushManifest(repo, ref, manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { ...pushed, artifactType: artifact.artifactType ?? 'application/vnd.unknown.artifact.v1' };
}

/** Push an OCI index over already pushed manifests (or indexes, for nesting). */
export async function pushIndex(reg: TestRegistry, repo: string, ref: string, entries: PushedDescriptor[]): Promise<PushedDescriptor> {
  const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: entries });
  return reg.pushManifest(repo, ref, index, 'application/vnd.oci.image.index.v1+json');
}

/** zstd-compress with the zstd binary (Node 20's zlib has no zstd). */
export async function zstdCompress(bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', ['-q', '-c', '-3'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`zstd exited ${code}`))));
    child.stdin.end(bytes);
  });
}
