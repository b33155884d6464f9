/**
 * A real cosign for tests: Debian trixie's `cosign` (2.5) in a debootstrap'ed root, cached under
 * build/cache/ like the stand-in's base, and run with chroot. Nothing of cosign is reimplemented:
 * the tests sign with it (a key it generated, `--tlog-upload=false`) and verify with the agent.
 * A first build needs debootstrap and Debian's mirror (`STANDIN_DEBIAN_MIRROR`, default
 * http://deb.debian.org/debian) and takes about a minute; builds are serialised by a lock
 * directory; a failed build is reported as the reason to skip.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CACHE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'cache');
// Bump when the recipe changes.
export const COSIGN_ROOT = join(CACHE, 'trixie-cosign-v1');
const LOCK = `${COSIGN_ROOT}.lock`;

/** Why cosign cannot be had here (before building), or undefined. */
export function cosignUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (debootstrap, chroot)';
  if (!existsSync(COSIGN_ROOT) && !existsSync('/usr/sbin/debootstrap')) return 'needs debootstrap to build the trixie root with cosign (apt-get install debootstrap)';
  return undefined;
}

async function build(): Promise<void> {
  const mirror = process.env.STANDIN_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
  const partial = `${COSIGN_ROOT}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(CACHE, { recursive: true });
  await run('debootstrap', ['--variant=minbase', '--include=cosign,ca-certificates', 'trixie', partial, mirror], { maxBuffer: 64 << 20 });
  await rename(partial, COSIGN_ROOT);
}

/** The trixie root with cosign, built once; resolves to a reason string when it cannot be built. */
export async function ensureCosignRoot(): Promise<string | undefined> {
  // The lock is a directory in the cache: without the cache (a fresh clone) every mkdir of it
  // would fail as if another build held it.
  await mkdir(CACHE, { recursive: true });
  for (let waited = 0; !existsSync(COSIGN_ROOT); waited += 500) {
    try {
      await mkdir(LOCK);
    } catch {
      if (waited > 10 * 60_000) return 'timed out waiting for another build of the cosign root';
      await sleep(500);
      continue;
    }
    try {
      if (!existsSync(COSIGN_ROOT)) await build();
    } catch (err) {
      return `cannot build the trixie root with cosign (debootstrap from Debian's mirror): ${(err as Error).message.slice(-300)}`;
    } finally {
      await rm(LOCK, { recursive: true, force: true });
    }
  }
  return undefined;
}

export interface CosignWorkspace {
  /** Host path of cosign's public key (cosign.pub). */
  publicKeyPath: string;
  /** Run cosign in the root; `env` adds to a clean environment (the key's password is set). */
  cosign(args: string[], env?: Record<string, string>): Promise<string>;
  close(): Promise<void>;
}

/**
 * A workspace inside the root: a key pair cosign generated, the registry's CA, and a docker
 * config with the registry's credentials (inside the root, removed by `close`).
 */
export async function cosignWorkspace(registries: { host: string; username: string; password: string }[], caPem: string): Promise<CosignWorkspace> {
  const dir = await mkdtemp(join(COSIGN_ROOT, 'tmp', 'cosign-'));
  const inRoot = `/${relative(COSIGN_ROOT, dir)}`;
  const auths = Object.fromEntries(registries.map((r) => [r.host, { auth: Buffer.from(`${r.username}:${r.password}`).toString('base64') }]));
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths }), { mode: 0o600 });
  await writeFile(join(dir, 'ca.pem'), caPem);
  const password = 'cosign-test-key-password';
  const cosign = async (args: string[], env: Record<string, string> = {}): Promise<string> => {
    const { stdout } = await run('/usr/sbin/chroot', [COSIGN_ROOT, '/usr/bin/env', '-C', inRoot, 'cosign', ...args], {
      env: { PATH: '/usr/bin:/bin', HOME: inRoot, DOCKER_CONFIG: inRoot, COSIGN_PASSWORD: password, SSL_CERT_FILE: `${inRoot}/ca.pem`, ...env },
      maxBuffer: 16 << 20,
    });
    return stdout;
  };
  await cosign(['generate-key-pair']);
  return {
    publicKeyPath: join(dir, 'cosign.pub'),
    cosign,
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

