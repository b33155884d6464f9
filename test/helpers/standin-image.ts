/**
 * The bootc stand-in image for tests, demos and benchmarks that need a "bootable container" but
 * cannot get a real one (no bootc image is reachable from our machines, environment.md §6).
 *
 * What it is: a Debian `--variant=minbase` userland (debootstrap, then `podman import`) with the
 * partitioning and filesystem tools bootc runs from the image (sfdisk/sgdisk, mkfs.{xfs,ext4,
 * btrfs,vfat}, mtools, cryptsetup, util-linux), label `containers.bootc=1`, and
 * `/usr/bin/bootc` = test/fixtures/bootc-standin/bootc, a shell script that behaves like
 * `bootc install to-disk` for the flags the agent passes (read its header for the details:
 * preconditions, layout, files written, milestones, canary scan, test hooks).
 *
 * Images are cached in the local podman storage and tagged by a hash of their inputs, so a
 * second build is a no-op (`podman image exists`). A first build needs network access to the
 * Debian mirror (`STANDIN_DEBIAN_MIRROR`, default http://deb.debian.org/debian) and takes about
 * 1.5 minutes; builds are serialised across processes with a lock directory.
 *
 * Secrets: registries that serve the stand-in should use STANDIN_REGISTRY_USERNAME /
 * STANDIN_REGISTRY_PASSWORD (see `startStandinRegistry`). The password, `base64(user:pass)` and
 * its base64 again are baked into the image (hex-encoded) as canaries; the stand-in's install
 * fails if it can find any of them in another process's argv/environment or in files under the
 * host's /tmp, /var/tmp, /run or /root. Test code must therefore never put these credentials on
 * a command line or in a file there while an install may run; `pushStandin` uses an auth file
 * under /var/lib/bootc-standin-auth for that reason.
 *
 * @example
 * const reason = standinUnavailable();
 * if (reason) return t.skip(reason);
 * const images = await buildStandinImages();
 * const registry = await startStandinRegistry({ auth: 'basic' });
 * const pushed = await pushStandin(registry, 'os/standin', 'latest', 'bootc');
 * // step args: { image_source: `oci://${registry.host}/os/standin:latest`, oci_pull_secret: STANDIN_PULL_SECRET }
 * @module
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pushArtifact, pushImage, pushIndex, registryUnavailable, startRegistry, type PushedDescriptor, type StartRegistryOptions, type TestRegistry } from './registry.ts';

const run = promisify(execFile);

/** The directory holding the stand-in's `bootc` script. */
export const STANDIN_FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'bootc-standin');

/** Registry user for stand-in tests (start registries with `startStandinRegistry`). */
export const STANDIN_REGISTRY_USERNAME = 'standin-user';
/** Registry password for stand-in tests; a canary the tenant image must never see. */
// Derived at run time so the literal never appears in a source file or a compile cache in /tmp.
export const STANDIN_REGISTRY_PASSWORD = `canary-pw-${createHash('sha256').update('bootc-standin registry password').digest('hex').slice(0, 16)}`;
/** The docker `auth` value, base64("user:pass"). */
export const STANDIN_AUTH = Buffer.from(`${STANDIN_REGISTRY_USERNAME}:${STANDIN_REGISTRY_PASSWORD}`).toString('base64');
/** What Ironic sends as `oci_pull_secret`: base64 of the docker auth value (bootc-install.md §8). */
export const STANDIN_PULL_SECRET = Buffer.from(STANDIN_AUTH).toString('base64');
/** Every string baked into the image as a canary. */
export const STANDIN_CANARIES: readonly string[] = [STANDIN_REGISTRY_PASSWORD, STANDIN_AUTH, STANDIN_PULL_SECRET];

/** `bootc --version` of the default stand-in. */
export const STANDIN_BOOTC_VERSION = '1.15.1';
export const STANDIN_DEBIAN_SUITE = 'bookworm';
/** Packages on top of minbase: the tools bootc runs from the image. */
export const STANDIN_PACKAGES: readonly string[] = ['gdisk', 'fdisk', 'dosfstools', 'e2fsprogs', 'xfsprogs', 'btrfs-progs', 'mtools', 'cryptsetup-bin'];
// Bump when the base recipe changes in a way the inputs below do not capture.
const BASE_RECIPE = 'minbase-trim-v1';
const LOCK_DIR = join(tmpdir(), 'bootc-standin-build.lock');
const AUTH_ROOT = '/var/lib/bootc-standin-auth';

export interface StandinImages {
  /** Local image name of the stand-in with bootc (`localhost/bootc-standin:<hash>`). */
  bootc: string;
  /** Same base and label, no /usr/bin/bootc (`podman run … bootc` exits 127). */
  noBootc: string;
  /** The Debian base the two are built on. */
  base: string;
}

export interface StandinBuildOptions {
  /** Progress messages (default: silent). */
  log?: (message: string) => void;
}

export interface StandinVariantOptions extends StandinBuildOptions {
  /** Include /usr/bin/bootc (default true). */
  bootc?: boolean;
  /** What `bootc --version` prints (default STANDIN_BOOTC_VERSION). */
  version?: string;
  /** A directory tree copied over the image's root (e.g. usr/lib/modules/<kver>/vmlinuz + initramfs.img and usr/lib/systemd/boot/efi/systemd-bootx64.efi for a bootable variant, or usr/lib/bootc/install/*.toml). */
  overlayDir?: string;
  /** Extra host paths the canary scan searches (one per line in /etc/standin/scan-paths). */
  scanPaths?: readonly string[];
  /** Bake no canaries (the scan is then off). */
  noCanaries?: boolean;
  /** Repository name of the local image (default `localhost/bootc-standin`). */
  name?: string;
}

function which(bin: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin'].some((d) => existsSync(join(d, bin)));
}

/** Why stand-in images cannot be built or run here, or undefined when they can. */
export function standinUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: rootful podman, loop devices';
  for (const bin of ['podman', 'skopeo', 'debootstrap', 'losetup', 'sfdisk', 'partx']) {
    if (!which(bin)) return `needs ${bin} (apt-get install ${bin === 'losetup' || bin === 'sfdisk' || bin === 'partx' ? 'util-linux fdisk' : bin})`;
  }
  if (!existsSync('/dev/loop-control')) return 'needs /dev/loop-control (loop device support)';
  return registryUnavailable();
}

async function podmanImageExists(name: string): Promise<boolean> {
  return run('podman', ['image', 'exists', name]).then(() => true, () => false);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// A cross-process lock: mkdir is atomic; a lock whose owner died is taken over.
async function withBuildLock<T>(fn: () => Promise<T>, log: (m: string) => void): Promise<T> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      await mkdir(LOCK_DIR);
      await writeFile(join(LOCK_DIR, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await readFile(join(LOCK_DIR, 'pid'), 'utf8').catch(() => '0'));
      if (owner && !pidAlive(owner)) {
        log(`removing stale build lock of pid ${owner}`);
        await rm(LOCK_DIR, { recursive: true, force: true });
        continue;
      }
      if (!owner) {
        // just created by another process, or left without a pid file: give it a moment
        const age = Date.now() - (await stat(LOCK_DIR).then((s) => s.mtimeMs, () => Date.now()));
        if (age > 30_000) await rm(LOCK_DIR, { recursive: true, force: true });
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the stand-in build lock ${LOCK_DIR}`);
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK_DIR, { recursive: true, force: true });
  }
}

function hash(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 16);
}

async function hashTree(dir: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (d: string): Promise<void> => {
    for (const entry of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, entry.name);
      h.update(relative(dir, p)).update('\0');
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) h.update(await readFile(p));
    }
  };
  await walk(dir);
  return h.digest('hex');
}

function baseTag(): string {
  return `localhost/bootc-standin-base:${hash(BASE_RECIPE, STANDIN_DEBIAN_SUITE, STANDIN_PACKAGES.join(','))}`;
}

// Runs a command, streaming nothing, failing with its stderr tail.
async function sh(file: string, args: string[], options: { input?: NodeJS.ReadableStream; cwd?: string } = {}): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'ignore', 'pipe'], cwd: options.cwd });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${stderr}`))));
    if (options.input) options.input.pipe(child.stdin);
    else child.stdin.end();
  });
}

/** The Debian base image (debootstrap minbase + tools), built once and cached. */
export async function buildStandinBase(options: StandinBuildOptions = {}): Promise<string> {
  const log = options.log ?? (() => undefined);
  const tag = baseTag();
  if (await podmanImageExists(tag)) return tag;
  return withBuildLock(async () => {
    if (await podmanImageExists(tag)) return tag;
    const work = await mkdtemp(join('/var/tmp', 'bootc-standin-base-'));
    try {
      const root = join(work, 'root');
      const mirror = process.env.STANDIN_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
      log(`debootstrap ${STANDIN_DEBIAN_SUITE} from ${mirror} (about 1.5 minutes)`);
      const debootstrap = ['--variant=minbase', `--include=${STANDIN_PACKAGES.join(',')}`, STANDIN_DEBIAN_SUITE, root, mirror];
      try {
        await sh('debootstrap', debootstrap);
      } catch (err) {
        // one retry for a flaky mirror; a second failure is reported with debootstrap's output
        log(`debootstrap failed, retrying once: ${(err as Error).message.slice(-300)}`);
        await rm(root, { recursive: true, force: true });
        await sh('debootstrap', debootstrap);
      }
      // Trim what no install needs: package caches and lists, docs, man pages, locales.
      for (const p of ['var/cache/apt', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale']) {
        await rm(join(root, p), { recursive: true, force: true });
        await mkdir(join(root, p), { recursive: true });
      }
      log(`podman import → ${tag}`);
      const tar = spawn('tar', ['-C', root, '--numeric-owner', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
      await sh('podman', ['import', '--change', 'CMD ["/bin/bash"]', '-', tag], { input: tar.stdout });
      return tag;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, log);
}

/**
 * One stand-in variant on the cached base: with or without bootc, another version, extra files.
 * Returns the local image name, tagged by a hash of everything that went in.
 */
export async function buildStandinVariant(options: StandinVariantOptions = {}): Promise<string> {
  const log = options.log ?? (() => undefined);
  const base = await buildStandinBase(options);
  const withBootc = options.bootc ?? true;
  const version = options.version ?? STANDIN_BOOTC_VERSION;
  const script = await readFile(join(STANDIN_FIXTURE_DIR, 'bootc'));
  const canaries = options.noCanaries ? '' : STANDIN_CANARIES.map((c) => Buffer.from(c).toString('hex')).join('\n') + '\n';
  const scanPaths = (options.scanPaths ?? []).join('\n');
  const overlayHash = options.overlayDir ? await hashTree(options.overlayDir) : '';
  const name = options.name ?? (withBootc ? 'localhost/bootc-standin' : 'localhost/bootc-standin-nobootc');
  const tag = `${name}:${hash(base, withBootc ? script : 'no-bootc', version, canaries, scanPaths, overlayHash)}`;
  if (await podmanImageExists(tag)) return tag;
  return withBuildLock(async () => {
    if (await podmanImageExists(tag)) return tag;
    // Not under /tmp: nothing canary-like may ever sit where the stand-in scans.
    const ctx = await mkdtemp(join('/var/lib', 'bootc-standin-ctx-'));
    try {
      const lines = [`FROM ${base}`];
      await mkdir(join(ctx, 'standin'));
      await writeFile(join(ctx, 'standin', 'version'), `${version}\n`);
      await writeFile(join(ctx, 'standin', 'canaries.hex'), canaries);
      await writeFile(join(ctx, 'standin', 'scan-paths'), scanPaths);
      lines.push('COPY standin/ /etc/standin/');
      if (withBootc) {
        await copyFile(join(STANDIN_FIXTURE_DIR, 'bootc'), join(ctx, 'bootc'));
        await chmod(join(ctx, 'bootc'), 0o755);
        lines.push('COPY bootc /usr/bin/bootc');
      }
      if (options.overlayDir) {
        await sh('cp', ['-a', `${options.overlayDir}/.`, join(ctx, 'overlay')]);
        lines.push('COPY overlay/ /');
      }
      lines.push('LABEL containers.bootc=1 ostree.bootable=1', 'CMD ["/bin/bash"]');
      await writeFile(join(ctx, 'Containerfile'), `${lines.join('\n')}\n`);
      log(`podman build → ${tag}`);
      await sh('podman', ['build', '--pull=never', '--format', 'oci', '-f', join(ctx, 'Containerfile'), '-t', tag, ctx]);
      return tag;
    } finally {
      await rm(ctx, { recursive: true, force: true });
    }
  }, log);
}

/** The two standard stand-ins (with and without bootc), built or reused. */
export async function buildStandinImages(options: StandinBuildOptions = {}): Promise<StandinImages> {
  const base = await buildStandinBase(options);
  const bootc = await buildStandinVariant({ ...options, bootc: true });
  const noBootc = await buildStandinVariant({ ...options, bootc: false });
  return { bootc, noBootc, base };
}

/** A registry (TLS, bcrypt htpasswd or token auth) with the stand-in credentials. */
export async function startStandinRegistry(options: Omit<StartRegistryOptions, 'username' | 'password'> = {}): Promise<TestRegistry> {
  return startRegistry({ ...options, username: STANDIN_REGISTRY_USERNAME, password: STANDIN_REGISTRY_PASSWORD });
}

/** Where a registry lives and how to log in; a TestRegistry fits. */
export interface RegistryTarget {
  host: string;
  /** certs.d-style directory holding `<host>/ca.crt`. */
  certsDir: string;
  username: string;
  password: string;
  auth?: 'basic' | 'token' | 'none';
}

/**
 * Copy a local image to `<registry>/<repo>:<tag>` with skopeo (gzip layers, OCI manifest).
 * `which` is 'bootc', 'noBootc' or a local image name. The credentials go through a short-lived
 * auth file outside the paths the stand-in scans, never argv.
 */
export async function pushStandin(registry: RegistryTarget, repo: string, tag: string, which: 'bootc' | 'noBootc' | (string & {}) = 'bootc'): Promise<{ reference: string; digest: string; image: string }> {
  const image = which === 'bootc' ? (await buildStandinImages()).bootc : which === 'noBootc' ? (await buildStandinImages()).noBootc : which;
  await mkdir(AUTH_ROOT, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(AUTH_ROOT, 'push-'));
  try {
    const authFile = join(dir, 'auth.json');
    const digestFile = join(dir, 'digest');
    const auth = Buffer.from(`${registry.username}:${registry.password}`).toString('base64');
    await writeFile(authFile, JSON.stringify({ auths: { [registry.host]: { auth } } }), { mode: 0o600 });
    const reference = `${registry.host}/${repo}:${tag}`;
    const args = ['copy', '--quiet', '--format', 'oci', '--dest-cert-dir', join(registry.certsDir, registry.host), '--digestfile', digestFile];
    if (registry.auth !== 'none') args.push('--dest-authfile', authFile);
    await sh('skopeo', [...args, `containers-storage:${image}`, `docker://${reference}`]);
    return { reference, digest: (await readFile(digestFile, 'utf8')).trim(), image };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** An index whose only image is for another architecture (default linux/arm64): no manifest for this host. */
export async function pushForeignArchImage(registry: TestRegistry, repo: string, tag: string, architecture = process.arch === 'arm64' ? 's390x' : 'arm64'): Promise<PushedDescriptor> {
  const layer = await gzipTar({ 'usr/bin/bootc': '#!/bin/sh\necho "bootc 1.15.1"\n' });
  const image = await pushImage(registry, repo, `${tag}-${architecture}`, {
    layers: [{ bytes: layer }], platform: { architecture, os: 'linux' }, labels: { 'containers.bootc': '1' },
  });
  return pushIndex(registry, repo, tag, [image]);
}

/** An OCI artifact (ORAS style) where a bootable image is expected. */
export async function pushNotBootable(registry: TestRegistry, repo: string, tag: string): Promise<PushedDescriptor> {
  return pushArtifact(registry, repo, tag, { bytes: Buffer.from('not an operating system\n'), title: 'readme.txt', mediaType: 'text/plain', artifactType: 'application/vnd.example.readme.v1' });
}

// A tiny gzip'd tar of text files (for fake layers), built with tar(1).
async function gzipTar(files: Record<string, string>): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'standin-layer-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), content, { mode: 0o755 });
    }
    const { stdout } = await run('tar', ['-C', dir, '--numeric-owner', '--owner=0', '--group=0', '-czf', '-', '.'], { encoding: 'buffer', maxBuffer: 16 << 20 });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
