/**
 * The bench's registry: test/helpers/registry.ts's real Debian docker-registry (TLS + htpasswd),
 * plus what a benchmark needs on top of it: test data written to files (not held in memory)
 * and streaming blob uploads from those files.
 * @module
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';
import { registryUnavailable, startRegistry, type PushedDescriptor, type TestRegistry } from '../../test/helpers/registry.ts';
import { deferCleanup, Skip } from './common.ts';

export type { TestRegistry } from '../../test/helpers/registry.ts';

export interface BenchRegistry {
  reg: TestRegistry;
  /** `<certsDir>/<host>` holds ca.crt: skopeo's --src-cert-dir. */
  certDir: string;
  /** A containers-auth.json with the test credentials (for skopeo/podman --authfile). */
  authFile: string;
  credentials: { type: 'basic'; username: string; password: string };
  agent: Agent;
  pushFile(repo: string, path: string): Promise<{ digest: string; size: number }>;
  stop(): Promise<void>;
}

export async function startBenchRegistry(dir: string): Promise<BenchRegistry> {
  const why = registryUnavailable();
  if (why) throw new Skip(why);
  const reg = await startRegistry({ auth: 'basic' });
  const agent = new Agent({ connect: { ca: reg.cert.cert } });
  const stop = deferCleanup(async () => {
    await agent.close();
    await reg.stop();
  });
  const authFile = join(dir, 'auth.json');
  await writeFile(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }), { mode: 0o600 });
  const basic = `Basic ${Buffer.from(`${reg.username}:${reg.password}`).toString('base64')}`;

  // Monolithic upload (POST, then PUT ?digest= with the whole file streamed as the body).
  const pushFile = async (repo: string, path: string) => {
    const { digest, size } = await hashFile(path);
    const start = await request(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', dispatcher: agent, headers: { authorization: basic } });
    await start.body.dump();
    if (start.statusCode !== 202) throw new Error(`upload start: HTTP ${start.statusCode}`);
    const location = new URL(String(start.headers.location), reg.url);
    location.searchParams.set('digest', digest);
    const put = await request(location, {
      method: 'PUT', dispatcher: agent, body: createReadStream(path, { highWaterMark: 1 << 20 }),
      headers: { authorization: basic, 'content-type': 'application/octet-stream', 'content-length': String(size) },
    });
    const text = await put.body.text();
    if (put.statusCode !== 201) throw new Error(`blob upload: HTTP ${put.statusCode} ${text}`);
    return { digest, size };
  };

  return {
    reg, agent, authFile, pushFile, stop,
    certDir: join(reg.certsDir, reg.host),
    credentials: { type: 'basic', username: reg.username, password: reg.password },
  };
}

export async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Incompressible bytes at memory speed: AES-128-CTR keystream with a random key. */
export async function writeRandomFile(path: string, size: number): Promise<void> {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(4 << 20);
  async function* chunks() {
    for (let left = size; left > 0; left -= zeros.length) yield cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
  }
  await pipeline(chunks, createWriteStream(path));
}

/**
 * Bytes shaped like a disk image for compression tests: per 1 MiB block, by turns, zeros (free
 * space), random (already-compressed files), and text-like data (base64 of random bytes, about
 * 75 % compressible) — zstd -3 gets roughly 2.5:1 on it.
 */
export async function writeDiskLikeFile(path: string, size: number): Promise<void> {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const block = 1 << 20;
  const zeros = Buffer.alloc(block);
  async function* chunks() {
    for (let offset = 0, i = 0; offset < size; offset += block, i++) {
      const n = Math.min(block, size - offset);
      const kind = i % 4;
      if (kind === 0 || kind === 2) yield zeros.subarray(0, n);
      else if (kind === 1) yield cipher.update(zeros.subarray(0, n));
      else yield Buffer.from(cipher.update(zeros.subarray(0, Math.ceil((n * 3) / 4))).toString('base64')).subarray(0, n);
    }
  }
  await pipeline(chunks, createWriteStream(path));
}

/** An image manifest over already pushed blobs (a small config blob is pushed here). */
export async function pushImageManifest(
  br: BenchRegistry, repo: string, tag: string, layers: { digest: string; size: number; mediaType: string }[],
): Promise<PushedDescriptor> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: {} }, rootfs: { type: 'layers', diff_ids: [] } }));
  const configDesc = await br.reg.pushBlob(repo, config);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configDesc }, layers,
  });
  return br.reg.pushManifest(repo, tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
}

/** A one-file artifact over an already pushed blob, shaped like `oras push` makes it. */
export async function pushArtifactManifest(
  br: BenchRegistry, repo: string, tag: string, layer: { digest: string; size: number }, title: string, mediaType: string,
): Promise<PushedDescriptor> {
  const empty = await br.reg.pushBlob(repo, Buffer.from('{}'));
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/vnd.bootc-agent.bench.disk.v1',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty, data: 'e30=' },
    layers: [{ mediaType, ...layer, annotations: { 'org.opencontainers.image.title': title } }],
  });
  return br.reg.pushManifest(repo, tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
}
