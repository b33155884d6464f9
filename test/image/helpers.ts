/**
 * Shared setup for the image tests: loop devices on sparse files (only our own, detached by
 * the returned cleanup), disk images with a real GPT made by sgdisk, a qcow2 made by qemu-img,
 * and an HTTPS server on port 0 with a throwaway certificate.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { createTestCertificate, type TestCertificate } from '../helpers/registry.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { toolMissing } from '../helpers/tools.ts';

const MiB = 1024 * 1024;

/** Why loop-device tests cannot run here, or undefined. */
export function loopUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: attaches a loop device';
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return toolMissing('losetup', 'sgdisk', 'partx', 'wipefs', 'blkid', 'lsblk', 'blockdev', 'dd', 'sfdisk');
}

export { toolMissing };

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export { attachLoop, type LoopDevice } from '../helpers/loop.ts';

/**
 * Call inside a describe(): a loop device of `sizeMiB` MiB over a file in `dir()`, attached
 * before the suite's tests and detached after them. `reason` says why they must skip (then
 * nothing is attached); `device` and `file` are the attached device's.
 */
export function suiteLoopDevice(dir: () => string, sizeMiB: number): { reason: string | undefined; readonly device: string; readonly file: string } {
  const reason = loopUnavailable();
  let loop: LoopDevice | undefined;
  before(async () => {
    if (!reason) loop = await attachLoop(dir(), sizeMiB);
  });
  after(() => loop?.detach());
  const attached = (): LoopDevice => {
    if (!loop) throw new Error(`no loop device attached${reason ? ` (${reason})` : ''}`);
    return loop;
  };
  return {
    reason,
    get device() { return attached().device; },
    get file() { return attached().file; },
  };
}

/** A `sizeMiB` raw disk image with a GPT (ESP + root) and random bytes in the partitions. */
export async function makeGptImage(dir: string, sizeMiB: number): Promise<Buffer> {
  const file = join(dir, `gpt-${Math.random().toString(36).slice(2)}.raw`);
  const bytes = randomBytes(sizeMiB * MiB);
  await writeFile(file, bytes);
  execFileSync('sgdisk', ['-Z', file], { stdio: 'ignore' });
  execFileSync('sgdisk', ['-n1:0:+2M', '-t1:ef00', '-c1:EFI', '-n2:0:0', '-t2:8300', '-c2:root', file], { stdio: 'ignore' });
  const out = await readFile(file);
  await rm(file, { force: true });
  return out;
}

/** The same raw bytes as a qcow2 file's content (made by qemu-img). */
export async function toQcow2(dir: string, raw: Buffer): Promise<Buffer> {
  const src = join(dir, `q-${Math.random().toString(36).slice(2)}.raw`);
  const dst = `${src}.qcow2`;
  await writeFile(src, raw);
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', src, dst]);
  const out = await readFile(dst);
  await rm(src, { force: true });
  await rm(dst, { force: true });
  return out;
}

export async function readHead(path: string, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** True when blkid finds no partition table or filesystem signature on the device. */
export function hasNoSignature(device: string): boolean {
  try {
    execFileSync('blkid', ['-p', device], { stdio: 'ignore' });
    return false;
  } catch (err) {
    return (err as { status?: number }).status === 2;
  }
}

export type Route = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpsServer {
  url: string;
  cert: TestCertificate;
  requests: { path: string; authorization: string | undefined }[];
  route(path: string, handler: Route): void;
  serve(path: string, bytes: Buffer, options?: { requireAuthorization?: string }): void;
  close(): Promise<void>;
}

/** An HTTPS server on 127.0.0.1:0 with a self-signed certificate (CA = the certificate). */
export async function startHttpsServer(dir: string): Promise<HttpsServer> {
  const cert = await createTestCertificate(dir);
  const routes = new Map<string, Route>();
  const requests: HttpsServer['requests'] = [];
  const server: Server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push({ path, authorization: req.headers.authorization });
    const handler = routes.get(path);
    if (handler) return handler(req, res);
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    cert,
    requests,
    route: (path, handler) => routes.set(path, handler),
    serve(path, bytes, options = {}) {
      routes.set(path, (req, res) => {
        if (options.requireAuthorization && req.headers.authorization !== options.requireAuthorization) {
          res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized');
          return;
        }
        res.writeHead(200, { 'content-length': String(bytes.length), 'content-type': 'application/octet-stream' });
        res.end(bytes);
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
