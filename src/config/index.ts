/**
 * Configuration: one declaration per option, parsed once with zod, then frozen.
 * @example
 * const config = loadConfig({ cmdline: readFileSync('/proc/cmdline', 'utf8'), env: process.env });
 * @module
 */
export { loadConfig, readConfigFile, formatHelp } from './load.ts';
export { parseKernelCmdline } from './cmdline.ts';
export { parseFlags, withBareBooleans } from './flags.ts';
export { OPTIONS, envName, flagName, parseBool, ENV_PREFIX } from './options.ts';
export type { Config, OptionDef, OptionKey } from './options.ts';
export type { ConfigSources } from './load.ts';
export { formatRegistryMirrors, MIRRORS_DROP_IN, parseNodeRegistryMirrors, parseRegistryMirrors } from './registry-mirrors.ts';
export type { MirrorPull, RegistryMirror } from './registry-mirrors.ts';
