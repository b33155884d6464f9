/**
 * Stand-ins for the ramdisk build output (`build/ramdisk/`, `build/ramdisk-arm64/`): the same
 * file names with random contents and a matching SHA256SUMS, and `skopeo inspect --raw` to read
 * what was pushed with a client we did not write.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestRegistry } from './registry.ts';

const run = promisify(execFile);

export interface FakeBuild {
  dir: string;
  files: Record<string, Buffer>;
}

/** Writes bootc-agent.kernel, bootc-agent.initramfs, manifest.txt and SHA256SUMS into `dir`. */
export async function writeFakeBuild(dir: string, arch: string, sizes: { kernel?: number; initramfs?: number } = {}): Promise<FakeBuild> {
  await mkdir(dir, { recursive: true });
  const files: Record<string, Buffer> = {
    'bootc-agent.kernel': randomBytes(sizes.kernel ?? 96 * 1024 + 7),
    'bootc-agent.initramfs': randomBytes(sizes.initramfs ?? 300 * 1024 + 13),
    'manifest.txt': Buffer.from(`arch ${arch}\nkernel 6.1.0-test\nnode v20.19.0\n`),
  };
  const sums = ['bootc-agent.kernel', 'bootc-agent.initramfs']
    .map((name) => `${createHash('sha256').update(files[name]!).digest('hex')}  ${name}\n`).join('');
  files['SHA256SUMS'] = Buffer.from(sums);
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes);
  return { dir, files };
}

/** An auth.json for the registry's user (skopeo's --authfile and our --authfile). */
export async function writeAuthFile(path: string, reg: TestRegistry, password = reg.password): Promise<string> {
  await writeFile(path, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${password}`).toString('base64') } } }), { mode: 0o600 });
  return path;
}

/** `skopeo inspect --raw` of `oci://`-less `host/repo:tag|@digest`: the exact bytes the registry serves, parsed. */
export async function skopeoRaw(reg: TestRegistry, authFile: string, name: string): Promise<{ raw: string; json: Record<string, unknown> }> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--authfile', authFile, '--cert-dir', join(reg.certsDir, reg.host), `docker://${name}`]);
  return { raw: stdout, json: JSON.parse(stdout) as Record<string, unknown> };
}

/**
 * `skopeo copy --all` between two repositories of the registry (what an operator mirroring does).
 * No `--preserve-digests`: Debian 12's skopeo 1.9 rewrites an index whose entries carry
 * `artifactType` (dropping it), which that flag refuses; the manifests themselves are copied as they are.
 */
export async function skopeoCopyAll(reg: TestRegistry, authFile: string, from: string, to: string): Promise<void> {
  const certDir = join(reg.certsDir, reg.host);
  await run('skopeo', ['copy', '--all', '--authfile', authFile, '--src-cert-dir', certDir, '--dest-cert-dir', certDir, `docker://${from}`, `docker://${to}`]);
}
