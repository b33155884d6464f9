/**
 * containers-registries.conf(5) — the same mirror/insecure/blocked policy podman applies, so
 * artifacts and bootc images follow one configuration. v2 `[[registry]]` tables plus the v1
 * `[registries.insecure]`/`[registries.block]` lists; drop-ins replace entries by prefix.
 * @module
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError } from '../errors.ts';
import { parse as parseToml, TomlError, type TomlTable, type TomlValue } from 'smol-toml';
import { formatName, parseReference, type ImageReference } from './reference.ts';

export type PullFromMirror = 'all' | 'digest-only' | 'tag-only';

export interface MirrorConfig {
  location: string;
  insecure: boolean;
  pullFromMirror: PullFromMirror;
}

export interface RegistryConfig {
  prefix: string;
  location: string;
  insecure: boolean;
  blocked: boolean;
  mirrorByDigestOnly: boolean;
  mirrors: MirrorConfig[];
}

export interface RegistriesConfig {
  registries: RegistryConfig[];
}

/** Where one pull may be served from, in the order to try. */
export interface PullSource {
  registry: string;
  repository: string;
  insecure: boolean;
  mirror: boolean;
}

export const DEFAULT_REGISTRIES_CONF = '/etc/containers/registries.conf';
export const DEFAULT_REGISTRIES_CONF_DIR = '/etc/containers/registries.conf.d';

function bad(source: string, message: string, cause?: unknown): AgentError {
  return new AgentError('REGISTRY_CONFIG_INVALID', `${source}: ${message}`, { cause, details: { source } });
}

function str(table: TomlTable, key: string, source: string): string {
  const v = table[key];
  if (v === undefined) return '';
  if (typeof v !== 'string') throw bad(source, `"${key}" must be a string`);
  return v;
}

function bool(table: TomlTable, key: string, source: string): boolean {
  const v = table[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw bad(source, `"${key}" must be true or false`);
  return v;
}

// TOML dates are objects too, but never tables.
function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
}

function tables(v: TomlValue | undefined, what: string, source: string): TomlTable[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every(isTable)) throw bad(source, `${what} must be [[tables]]`);
  return v;
}

function v1List(root: TomlTable, name: string, source: string): string[] {
  const section = root['registries'];
  if (!isTable(section)) return [];
  const entry = section[name];
  if (!isTable(entry)) return [];
  const list = entry['registries'] ?? [];
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw bad(source, `registries.${name}.registries must be strings`);
  return list as string[];
}

// The parser's message is followed by a quote of the surrounding lines: only its first line is
// kept, with the position, so the error names the file and line without repeating its content.
function parseTomlFile(text: string, source: string): TomlTable {
  try {
    return parseToml(text);
  } catch (err) {
    if (!(err instanceof TomlError)) throw bad(source, (err as Error).message, err);
    const reason = err.message.split('\n', 1)[0]!.replace(/^Invalid TOML document: /, '');
    throw bad(source, `line ${err.line}: ${reason}`, err);
  }
}

export function parseRegistriesConf(text: string, source = 'registries.conf'): RegistriesConfig {
  const root = parseTomlFile(text, source);
  const registries: RegistryConfig[] = [];
  for (const t of tables(root['registry'], '[[registry]]', source)) {
    const location = str(t, 'location', source);
    const prefix = str(t, 'prefix', source) || location;
    if (prefix === '') throw bad(source, '[[registry]] needs a prefix or a location');
    if (prefix.startsWith('*.') && location !== '') throw bad(source, `wildcarded prefix "${prefix}" cannot have a location`);
    const mirrorByDigestOnly = bool(t, 'mirror-by-digest-only', source);
    const mirrors = tables(t['mirror'], '[[registry.mirror]]', source).map((m): MirrorConfig => {
      const pull = str(m, 'pull-from-mirror', source) || 'all';
      if (pull !== 'all' && pull !== 'digest-only' && pull !== 'tag-only') throw bad(source, `bad pull-from-mirror "${pull}"`);
      if (mirrorByDigestOnly && pull !== 'all') throw bad(source, 'pull-from-mirror cannot be combined with mirror-by-digest-only');
      const mirrorLocation = str(m, 'location', source);
      if (mirrorLocation === '') throw bad(source, '[[registry.mirror]] needs a location');
      return { location: mirrorLocation, insecure: bool(m, 'insecure', source), pullFromMirror: pull };
    });
    registries.push({ prefix, location, insecure: bool(t, 'insecure', source), blocked: bool(t, 'blocked', source), mirrorByDigestOnly, mirrors });
  }
  const v1 = (host: string): RegistryConfig => ({ prefix: host, location: host, insecure: false, blocked: false, mirrorByDigestOnly: false, mirrors: [] });
  for (const host of v1List(root, 'insecure', source)) {
    const entry = registries.find((r) => r.prefix === host) ?? registries[registries.push(v1(host)) - 1]!;
    entry.insecure = true;
  }
  for (const host of v1List(root, 'block', source)) {
    const entry = registries.find((r) => r.prefix === host) ?? registries[registries.push(v1(host)) - 1]!;
    entry.blocked = true;
  }
  return { registries };
}

/** A later file's entries replace earlier ones with the same prefix (containers/image drop-in rule). */
export function mergeRegistriesConf(base: RegistriesConfig, next: RegistriesConfig): RegistriesConfig {
  const byPrefix = new Map(base.registries.map((r) => [r.prefix, r]));
  for (const r of next.registries) byPrefix.set(r.prefix, r);
  return { registries: [...byPrefix.values()] };
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw bad(path, 'cannot be read', err);
  }
}

export async function loadRegistriesConf(
  path = DEFAULT_REGISTRIES_CONF,
  dropInDir = DEFAULT_REGISTRIES_CONF_DIR,
): Promise<RegistriesConfig> {
  const text = await readOptional(path);
  let conf = text === undefined ? { registries: [] } : parseRegistriesConf(text, path);
  let names: string[] = [];
  try {
    names = (await readdir(dropInDir)).filter((n) => n.endsWith('.conf')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw bad(dropInDir, 'cannot be listed', err);
  }
  for (const name of names) {
    const file = join(dropInDir, name);
    const dropIn = await readOptional(file);
    if (dropIn !== undefined) conf = mergeRegistriesConf(conf, parseRegistriesConf(dropIn, file));
  }
  return conf;
}

// containers/image refMatchingPrefix: the prefix must end at a component boundary.
function matchLength(name: string, prefix: string): number {
  if (prefix.startsWith('*.')) {
    const host = name.split('/')[0]!.replace(/:[0-9]+$/, '');
    return host.endsWith(prefix.slice(1)) ? prefix.length : -1;
  }
  if (name === prefix) return prefix.length;
  if (!name.startsWith(prefix)) return -1;
  const next = name[prefix.length];
  return next === '/' || next === ':' || next === '@' ? prefix.length : -1;
}

/** The `[[registry]]` entry with the longest prefix matching `name` (`host/repo:tag` or `host`). */
export function findRegistryConfig(conf: RegistriesConfig, name: string): RegistryConfig | undefined {
  let best: RegistryConfig | undefined;
  let bestLength = -1;
  for (const entry of conf.registries) {
    const n = matchLength(name, entry.prefix);
    if (n > bestLength) {
      best = entry;
      bestLength = n;
    }
  }
  return best;
}

export function isInsecureRegistry(conf: RegistriesConfig, host: string): boolean {
  return findRegistryConfig(conf, host)?.insecure ?? false;
}

function rewrite(name: string, prefix: string, location: string, source: string): { registry: string; repository: string } {
  // A wildcard prefix matches a whole host, so a mirror location replaces that host.
  const matched = prefix.startsWith('*.') ? name.split('/')[0]!.length : prefix.length;
  const rewritten = location === '' ? name : location + name.slice(matched);
  try {
    const ref = parseReference(`oci://${rewritten}`);
    return { registry: ref.registry, repository: ref.repository };
  } catch (err) {
    throw bad(source, `rewriting ${name} with location "${location}" gives an invalid reference`, err);
  }
}

/** Mirrors (as allowed for this reference) then the primary location; throws REGISTRY_BLOCKED. */
export function pullSources(conf: RegistriesConfig, ref: ImageReference): PullSource[] {
  const name = formatName(ref);
  const entry = findRegistryConfig(conf, name);
  if (!entry) return [{ registry: ref.registry, repository: ref.repository, insecure: false, mirror: false }];
  if (entry.blocked) {
    throw new AgentError('REGISTRY_BLOCKED', `registries.conf blocks pulls of ${name} (prefix "${entry.prefix}")`, {
      details: { reference: name, prefix: entry.prefix },
    });
  }
  const sources: PullSource[] = [];
  const byDigest = ref.digest !== undefined;
  for (const mirror of entry.mirrors) {
    if (entry.mirrorByDigestOnly && !byDigest) continue;
    if (mirror.pullFromMirror === 'digest-only' && !byDigest) continue;
    if (mirror.pullFromMirror === 'tag-only' && byDigest) continue;
    sources.push({ ...rewrite(name, entry.prefix, mirror.location, 'registries.conf mirror'), insecure: mirror.insecure, mirror: true });
  }
  sources.push({ ...rewrite(name, entry.prefix, entry.location, 'registries.conf'), insecure: entry.insecure, mirror: false });
  return sources;
}
