/**
 * Builds the frozen Config from, lowest precedence first: defaults, the kernel command line,
 * the JSON config file, environment variables, then explicit overrides (CLI flags, tests).
 * This follows IPA, where command-line parameters are defaults that config files override.
 * @module
 */
import { readFileSync } from 'node:fs';
import { AgentError } from '../errors.ts';
import { parseKernelCmdline } from './cmdline.ts';
import { parseRegistryMirrors } from './registry-mirrors.ts';
import { buildConfigSchema, envName, flagName, OPTIONS, type Config, type OptionDef, type OptionKey } from './options.ts';

export interface ConfigSources {
  /** Raw kernel command line (normally /proc/cmdline). */
  cmdline?: string;
  /** Parsed JSON config file content (an object of snake_case keys). */
  file?: unknown;
  /** Where `file` came from, for error messages. */
  filePath?: string;
  env?: Record<string, string | undefined>;
  overrides?: Partial<Record<OptionKey, unknown>>;
}

// Compile-time check that Config and OPTIONS name the same keys.
type Missing = Exclude<OptionKey, keyof Config> | Exclude<keyof Config, OptionKey>;
const configKeysMatch: Missing extends never ? true : Missing = true;
void configKeysMatch;

export function loadConfig(sources: ConfigSources): Readonly<Config> {
  const raw: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  const defs = OPTIONS as readonly OptionDef[];

  if (sources.cmdline !== undefined) {
    const params = parseKernelCmdline(sources.cmdline);
    for (const def of defs) {
      if (def.cmdline && params.has(def.cmdline)) {
        raw[def.key] = params.get(def.cmdline);
        origin[def.key] = `kernel command line ${def.cmdline}`;
      }
    }
  }
  if (sources.file !== undefined) {
    if (typeof sources.file !== 'object' || sources.file === null || Array.isArray(sources.file)) {
      throw new AgentError('CONFIG_INVALID', `Config file ${sources.filePath ?? ''} must hold a JSON object`);
    }
    const known = new Set(defs.map((d) => d.key));
    for (const [key, value] of Object.entries(sources.file)) {
      if (!known.has(key)) {
        throw new AgentError('CONFIG_INVALID', `Unknown key "${key}" in config file ${sources.filePath ?? ''}`, { details: { key } });
      }
      raw[key] = value;
      origin[key] = `config file ${sources.filePath ?? ''}`.trim();
    }
  }
  for (const def of defs) {
    const value = sources.env?.[envName(def)];
    if (value !== undefined && value !== '') {
      raw[def.key] = value;
      origin[def.key] = `environment ${envName(def)}`;
    }
  }
  for (const [key, value] of Object.entries(sources.overrides ?? {})) {
    if (value !== undefined) {
      raw[key] = value;
      origin[key] = 'command-line flag';
    }
  }

  const parsed = buildConfigSchema().safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const def = defs.find((d) => d.key === key);
    const names = def ? [def.key, def.cmdline, envName(def)].filter(Boolean).join(' / ') : key;
    throw new AgentError('CONFIG_INVALID', `Invalid configuration value for ${names} (from ${origin[key] ?? 'defaults'}): ${issue.message}`, {
      details: { key, source: origin[key] ?? 'defaults' },
    });
  }
  const config = parsed.data as unknown as Config;
  if (config.registry_mirrors !== undefined) checkRegistryMirrors(config.registry_mirrors, origin['registry_mirrors'] ?? 'defaults');
  if ((config.tls_cert_file === undefined) !== (config.tls_key_file === undefined)) {
    throw new AgentError('CONFIG_INVALID', 'tls_cert_file and tls_key_file must be given together', { details: { key: 'tls_cert_file' } });
  }
  return Object.freeze(config);
}

// A mirror entry whose CA file cannot be read stops the agent here, naming the option, rather than
// at the first pull.
function checkRegistryMirrors(text: string, source: string): void {
  const names = 'registry_mirrors / bootc-agent-registry-mirrors / BOOTC_AGENT_REGISTRY_MIRRORS';
  const where = `${names} (from ${source})`;
  for (const mirror of parseRegistryMirrors(text, where)) {
    if (mirror.ca === undefined) continue;
    let pem: string;
    try {
      pem = readFileSync(mirror.ca, 'utf8');
    } catch (err) {
      throw new AgentError('REGISTRY_MIRRORS_INVALID', `${where}: ca=${mirror.ca} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        cause: err, details: { key: 'registry_mirrors', ca: mirror.ca },
      });
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new AgentError('REGISTRY_MIRRORS_INVALID', `${where}: ca=${mirror.ca} holds no PEM certificate`, { details: { key: 'registry_mirrors', ca: mirror.ca } });
    }
  }
}

/** Reads and parses a JSON config file; a missing optional file yields undefined. */
export function readConfigFile(path: string, required: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AgentError('CONFIG_INVALID', `Cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new AgentError('CONFIG_INVALID', `Config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** `--help` text listing every option with its three spellings. */
export function formatHelp(): string {
  const lines = [
    'Usage: bootc-agent [--config FILE] [--KEY=VALUE ...]',
    '       bootc-agent fetch oci://... --output FILE|DEVICE   (see docs/write-image.md)',
    '',
    'Options (precedence: defaults < kernel command line < config file < environment < flags):',
    'A true/false option given alone as a flag (--debug) means true; --debug=false turns it off.',
  ];
  for (const def of OPTIONS as readonly OptionDef[]) {
    const dflt = def.default === undefined ? '' : ` (default: ${String(def.default)})`;
    lines.push(`  --${flagName(def)}  ${def.cmdline ? `cmdline ${def.cmdline}, ` : ''}env ${envName(def)}${dflt}`);
    lines.push(`      ${def.help}`);
  }
  return lines.join('\n');
}
