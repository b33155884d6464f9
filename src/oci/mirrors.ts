/**
 * Registry mirrors given as a list (the `registry_mirrors` option, a node's `instance_info`)
 * turned into what both our client and podman read: `[[registry]]` entries of registries.conf,
 * a drop-in written into registries.conf.d at start, and per command a private configuration
 * podman is pointed at through `$HOME/.config/containers/registries.conf.d` — containers/image
 * reads that directory after the system one, so a node's entries win over the boot-time ones,
 * as they do in our client.
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError } from '../errors.ts';
import { apiHost } from './reference.ts';
import {
  DEFAULT_REGISTRIES_CONF, loadRegistriesConf, mergeRegistriesConf, type PullFromMirror, type RegistriesConfig, type RegistryConfig,
} from './registries-conf.ts';

/** One mirror of one registry or namespace prefix (the shape src/config parses the option into). */
export interface MirrorEntry {
  registry: string;
  mirror: string;
  pull: PullFromMirror;
  insecure: boolean;
  ca?: string | undefined;
}

/**
 * The `[[registry]]` entries for `mirrors`, mirrors in the order given. An entry of `base` with the
 * same prefix keeps its location, `insecure` and `blocked`: a drop-in replaces a whole entry, and
 * adding mirrors must not drop what the image's own registries.conf said about the registry.
 */
export function mirrorsRegistriesConf(mirrors: readonly MirrorEntry[], base?: RegistriesConfig): RegistriesConfig {
  const byPrefix = new Map<string, RegistryConfig>();
  for (const m of mirrors) {
    let entry = byPrefix.get(m.registry);
    if (!entry) {
      const known = base?.registries.find((r) => r.prefix === m.registry);
      entry = { prefix: m.registry, location: known?.location || m.registry, insecure: known?.insecure ?? false, blocked: known?.blocked ?? false, mirrorByDigestOnly: false, mirrors: [] };
      byPrefix.set(m.registry, entry);
    }
    entry.mirrors.push({ location: m.mirror, insecure: m.insecure, pullFromMirror: m.pull });
  }
  return { registries: [...byPrefix.values()] };
}

// Our grammar allows no character TOML would need escaped beyond what JSON escapes the same way.
const tomlString = (s: string): string => JSON.stringify(s);

/** registries.conf v2 text for `conf`'s `[[registry]]` entries (keys before each `[[registry.mirror]]`). */
export function renderRegistriesConf(conf: RegistriesConfig, header: string): string {
  const lines = header.split('\n').map((l) => `# ${l}`);
  for (const r of conf.registries) {
    lines.push('', '[[registry]]', `prefix = ${tomlString(r.prefix)}`);
    if (r.location) lines.push(`location = ${tomlString(r.location)}`);
    if (r.insecure) lines.push('insecure = true');
    if (r.blocked) lines.push('blocked = true');
    if (r.mirrorByDigestOnly) lines.push('mirror-by-digest-only = true');
    for (const m of r.mirrors) {
      lines.push('', '[[registry.mirror]]', `location = ${tomlString(m.location)}`);
      if (m.insecure) lines.push('insecure = true');
      if (m.pullFromMirror !== 'all') lines.push(`pull-from-mirror = ${tomlString(m.pullFromMirror)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, text, { mode, flag: 'wx' });
  await rename(tmp, path).catch(async (err: unknown) => {
    await rm(tmp, { force: true });
    throw err;
  });
}

const CA_PREFIX = 'bootc-agent-mirror-';

// Each mirror CA goes to <certsDir>/<host:port>/bootc-agent-mirror-<hash>.crt: next to the
// operator's own ca.crt, never over it, and recognisable for removal at the next start.
async function installMirrorCas(mirrors: readonly MirrorEntry[], certsDir: string): Promise<string[]> {
  const written: string[] = [];
  for (const m of mirrors) {
    if (!m.ca) continue;
    let pem: Buffer;
    try {
      pem = await readFile(m.ca);
    } catch (err) {
      throw new AgentError('REGISTRY_MIRRORS_INVALID', `registry_mirrors: ca=${m.ca} cannot be read`, { cause: err, details: { ca: m.ca } });
    }
    const dir = join(certsDir, apiHost(m.mirror.split('/')[0]!));
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const target = join(dir, `${CA_PREFIX}${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.crt`);
    await copyFile(m.ca, target);
    written.push(target);
  }
  return written;
}

async function removeMirrorCas(certsDir: string): Promise<void> {
  const hosts = await readdir(certsDir, { withFileTypes: true }).catch(() => []);
  for (const host of hosts) {
    if (!host.isDirectory()) continue;
    const files = await readdir(join(certsDir, host.name)).catch(() => [] as string[]);
    await Promise.all(files.filter((f) => f.startsWith(CA_PREFIX)).map((f) => rm(join(certsDir, host.name, f), { force: true })));
  }
}

export interface MirrorsDropIn {
  /** The registries.conf.d directory. */
  dir: string;
  fileName: string;
  certsDir: string;
  /** The main registries.conf the drop-in's entries are completed from. */
  registriesConfPath?: string;
}

/**
 * Writes (or, with no mirrors, removes) the boot-time drop-in and the mirror CAs, replacing those
 * of a previous start. Returns the drop-in's path when one was written.
 */
export async function writeMirrorsDropIn(target: MirrorsDropIn, mirrors: readonly MirrorEntry[], header: string): Promise<string | undefined> {
  const path = join(target.dir, target.fileName);
  await rm(path, { force: true });
  await removeMirrorCas(target.certsDir);
  if (mirrors.length === 0) return undefined;
  // What the other files say about these prefixes, read without our previous drop-in.
  const base = await loadRegistriesConf(target.registriesConfPath ?? DEFAULT_REGISTRIES_CONF, target.dir);
  await installMirrorCas(mirrors, target.certsDir);
  await mkdir(target.dir, { recursive: true, mode: 0o755 });
  await writeAtomically(path, renderRegistriesConf(mirrorsRegistriesConf(mirrors, base), header), 0o644);
  return path;
}

export interface PodmanRegistries {
  /** Entries to merge over the client's configuration for this command's calls. */
  overlay: RegistriesConfig;
  /** What podman's environment needs (a private HOME), or nothing when podman's defaults suffice. */
  env: Record<string, string>;
  /** Removes the private files (call on every way out). */
  dispose(): Promise<void>;
}

export interface PodmanRegistriesInput {
  /** The client's configuration (main file plus drop-ins), which node entries are completed from. */
  base: RegistriesConfig;
  /** The node's mirrors (may be empty). */
  mirrors: readonly MirrorEntry[];
  /** The agent's registries.conf.d, and whether podman reads it by itself (it is the default one). */
  confDir: string;
  confDirIsDefault: boolean;
  /** Where the private directory is made (under state_dir). */
  parentDir: string;
}

async function copyDropIns(from: string, to: string): Promise<void> {
  const names = (await readdir(from).catch(() => [] as string[])).filter((n) => n.endsWith('.conf')).sort();
  for (const name of names) {
    await writeFile(join(to, `50-${name}`), await readFile(join(from, name)), { mode: 0o600, flag: 'wx' });
  }
}

/**
 * The registries configuration of one command for podman: a private `$HOME` (0700, under
 * `parentDir`) whose `.config/containers/registries.conf.d` holds copies of the agent's drop-ins
 * when podman would not read their directory, then the node's entries (0600). Nothing is
 * written when neither applies.
 */
export async function preparePodmanRegistries(input: PodmanRegistriesInput): Promise<PodmanRegistries> {
  const overlay = mirrorsRegistriesConf(input.mirrors, input.base);
  if (input.mirrors.length === 0 && input.confDirIsDefault) return { overlay, env: {}, dispose: async () => {} };
  await mkdir(input.parentDir, { recursive: true, mode: 0o700 });
  const home = join(input.parentDir, `registries-${randomBytes(5).toString('hex')}`);
  const dispose = () => rm(home, { recursive: true, force: true });
  try {
    const dropIns = join(home, '.config', 'containers', 'registries.conf.d');
    await mkdir(dropIns, { recursive: true, mode: 0o700 });
    if (!input.confDirIsDefault) await copyDropIns(input.confDir, dropIns);
    if (input.mirrors.length) {
      await writeFile(join(dropIns, '90-node-mirrors.conf'), renderRegistriesConf(overlay, 'The node\'s registry mirrors (instance_info), for one command.'), { mode: 0o600, flag: 'wx' });
    }
    return { overlay, env: { HOME: home }, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** The client's configuration with `overlay` applied over it, the way a later drop-in applies. */
export function withOverlay(base: RegistriesConfig, overlay: RegistriesConfig | undefined): RegistriesConfig {
  return overlay && overlay.registries.length ? mergeRegistriesConf(base, overlay) : base;
}
