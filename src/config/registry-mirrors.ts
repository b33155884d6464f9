/**
 * The `registry_mirrors` format, shared by the boot option and the per-node `instance_info` keys:
 * comma-separated `REGISTRY=MIRROR[;FLAG…]` entries, in order (several entries for one registry
 * are several mirrors, tried in that order before the registry itself). Flags: `digest-only`,
 * `tag-only`, `insecure`, `ca=PATH`. REGISTRY may be a namespace prefix (`quay.io/org`).
 * Parsed strictly: every error names the entry.
 * @module
 */
import { AgentError } from '../errors.ts';

export type MirrorPull = 'all' | 'digest-only' | 'tag-only';

export interface RegistryMirror {
  /** The registry or namespace prefix the mirror serves (`quay.io`, `quay.io/org`, `10.0.0.1:5000`). */
  registry: string;
  /** Where the mirror is: `host[:port][/path]`; the rest of the image name is appended to it. */
  mirror: string;
  pull: MirrorPull;
  insecure: boolean;
  /** A PEM CA file for the mirror's TLS, copied into the certs.d directory of the mirror's host. */
  ca?: string;
}

/** The name of the drop-in the agent writes into `registries_conf_dir` (sorts after the image's own). */
export const MIRRORS_DROP_IN = '99-bootc-agent-mirrors.conf';

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const HOST = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?';
const LOCATION = new RegExp(`^${HOST}(?:/${COMPONENT})*$`);
const MAX_ENTRIES = 64;

function invalid(where: string, entry: string, message: string): AgentError {
  return new AgentError('REGISTRY_MIRRORS_INVALID', `${where}: entry "${entry.slice(0, 200)}": ${message}`, {
    details: { where, entry: entry.slice(0, 200) },
  });
}

function location(value: string, what: string, where: string, entry: string): string {
  if (!LOCATION.test(value)) throw invalid(where, entry, `${what} "${value.slice(0, 100)}" is not host[:port][/path] (lower-case path components)`);
  const port = /:([0-9]+)(?:\/|$)/.exec(value.replace(/^\[[^\]]*\]/, ''))?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw invalid(where, entry, `${what} has port ${port} out of range`);
  return value;
}

function applyFlag(flag: string, out: RegistryMirror, where: string, entry: string, seen: Set<string>): void {
  const name = flag.includes('=') ? flag.slice(0, flag.indexOf('=')) : flag;
  if (seen.has(name)) throw invalid(where, entry, `flag "${name}" given twice`);
  seen.add(name);
  if (flag === 'digest-only' || flag === 'tag-only') {
    if (out.pull !== 'all') throw invalid(where, entry, 'digest-only and tag-only exclude each other');
    out.pull = flag;
  } else if (flag === 'insecure') {
    out.insecure = true;
  } else if (name === 'ca') {
    const path = flag.slice(3);
    if (!path.startsWith('/') || path.includes('\0') || /(^|\/)\.\.(\/|$)/.test(path)) throw invalid(where, entry, 'ca= needs an absolute path to a PEM file');
    out.ca = path;
  } else {
    throw invalid(where, entry, `unknown flag "${flag.slice(0, 40)}" (digest-only, tag-only, insecure, ca=PATH)`);
  }
}

function parseEntry(entry: string, where: string): RegistryMirror {
  const eq = entry.indexOf('=');
  if (eq <= 0) throw invalid(where, entry, 'expected REGISTRY=MIRROR[;FLAG…]');
  const [target = '', ...flags] = entry.slice(eq + 1).split(';').map((s) => s.trim());
  const out: RegistryMirror = {
    registry: location(entry.slice(0, eq).trim(), 'registry', where, entry),
    mirror: location(target, 'mirror', where, entry),
    pull: 'all',
    insecure: false,
  };
  const seen = new Set<string>();
  for (const flag of flags) {
    if (flag === '') throw invalid(where, entry, 'empty flag');
    applyFlag(flag, out, where, entry, seen);
  }
  if (out.insecure && out.ca) throw invalid(where, entry, 'insecure and ca= exclude each other');
  if (out.mirror === out.registry) throw invalid(where, entry, 'a registry cannot be its own mirror');
  return out;
}

/** Parses the text format; `where` names the option or key in errors. An empty text is no mirror. */
export function parseRegistryMirrors(text: string, where = 'registry_mirrors'): RegistryMirror[] {
  if (text.trim() === '') return [];
  const entries = text.split(',').map((e) => e.trim());
  if (entries.length > MAX_ENTRIES) throw invalid(where, text, `more than ${MAX_ENTRIES} entries`);
  const out: RegistryMirror[] = [];
  for (const entry of entries) {
    if (entry === '') throw invalid(where, text, 'empty entry (a stray comma)');
    const parsed = parseEntry(entry, where);
    if (out.some((m) => m.registry === parsed.registry && m.mirror === parsed.mirror)) throw invalid(where, entry, 'the same mirror twice for one registry');
    out.push(parsed);
  }
  return out;
}

/** The same list as text (what the format round-trips to). */
export function formatRegistryMirrors(mirrors: readonly RegistryMirror[]): string {
  return mirrors.map((m) => [
    `${m.registry}=${m.mirror}`,
    ...(m.pull === 'all' ? [] : [m.pull]),
    ...(m.insecure ? ['insecure'] : []),
    ...(m.ca ? [`ca=${m.ca}`] : []),
  ].join(';')).join(',');
}

const PULLS: readonly MirrorPull[] = ['all', 'digest-only', 'tag-only'];

function objectEntry(item: unknown, i: number, key: string): string {
  const where = `${key}[${i}]`;
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalid(key, JSON.stringify(item)?.slice(0, 100) ?? String(item), `${where} must be an object {registry, mirror, pull_from_mirror?, insecure?}`);
  const o = item as Record<string, unknown>;
  const shown = JSON.stringify(o).slice(0, 200);
  const extra = Object.keys(o).filter((k) => !['registry', 'mirror', 'pull_from_mirror', 'insecure'].includes(k));
  if (extra.length) throw invalid(key, shown, `unknown field ${extra[0]!.slice(0, 40)} (registry, mirror, pull_from_mirror, insecure; CA files are a boot option)`);
  if (typeof o['registry'] !== 'string' || typeof o['mirror'] !== 'string') throw invalid(key, shown, 'registry and mirror must be strings');
  const pull = o['pull_from_mirror'] ?? 'all';
  if (!PULLS.includes(pull as MirrorPull)) throw invalid(key, shown, `pull_from_mirror must be one of ${PULLS.join(', ')}`);
  if (o['insecure'] !== undefined && typeof o['insecure'] !== 'boolean') throw invalid(key, shown, 'insecure must be true or false');
  if (/[,;=]/.test(o['registry'] + o['mirror'])) throw invalid(key, shown, 'registry and mirror cannot hold , ; or =');
  return [`${o['registry']}=${o['mirror']}`, ...(pull === 'all' ? [] : [pull as string]), ...(o['insecure'] ? ['insecure'] : [])].join(';');
}

/**
 * A node's mirrors from `instance_info` (`key` names it in errors): the same text format, or a
 * list of `{registry, mirror, pull_from_mirror?, insecure?}` objects. `ca=` is refused here: a
 * CA file is something the ramdisk holds, so it is a boot option.
 */
export function parseNodeRegistryMirrors(value: unknown, key: string): RegistryMirror[] {
  if (value === undefined || value === null) return [];
  let text: string;
  if (typeof value === 'string') text = value;
  else if (Array.isArray(value)) {
    if (value.length > MAX_ENTRIES) throw invalid(key, `${value.length} entries`, `more than ${MAX_ENTRIES} entries`);
    text = value.map((item, i) => objectEntry(item, i, key)).join(',');
  } else throw invalid(key, JSON.stringify(value)?.slice(0, 100) ?? '', 'expected a string or a list of objects');
  const mirrors = parseRegistryMirrors(text, key);
  const withCa = mirrors.find((m) => m.ca !== undefined);
  if (withCa) throw invalid(key, formatRegistryMirrors([withCa]), 'ca= is a boot option (registry_mirrors): a node cannot name files in the ramdisk');
  return mirrors;
}
