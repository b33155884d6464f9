/**
 * The bootc deploy request: `step.args` exactly as the upstream conductor sends them plus the
 * `instance_info` keys we read. Data from the conductor is parsed leniently (unknown keys are
 * ignored), but every value we use is checked strictly: `"false"` is false, and anything
 * unclear is an error rather than a guess.
 * @module
 */
import { z } from 'zod';
import { parseBool, parseNodeRegistryMirrors, type RegistryMirror } from '../config/index.ts';
import { registryAuth, type RegistryAuth } from '../deploy/pull-secret.ts';
import { parseRootDeviceHints, rootDeviceSelectionFromNode, type RootDeviceSelection } from '../disk/index.ts';
import { AgentError } from '../errors.ts';
import { parseReference, type ImageReference } from '../oci/index.ts';
import { CONTAINER_STORAGE_MODES, type ContainerStorageMode } from './admission.ts';

export const FILESYSTEMS = ['xfs', 'ext4', 'btrfs'] as const;
export type Filesystem = (typeof FILESYSTEMS)[number];

export interface BootcDeployRequest {
  imageSource: string;
  /** `imageSource` parsed. */
  image: ImageReference;
  /** The root device hints (checked) and skip list. */
  rootDevice: RootDeviceSelection;
  configdrive: string | null;
  /** From `oci_pull_secret`, parsed for the image's registry. */
  auth: RegistryAuth | undefined;
  authorizedKeys: string[];
  tpm2Luks: boolean;
  /** Bind-mount an install-config drop-in that allows tpm2-luks (images often only allow direct). */
  luksAllowInInstallConfig: boolean;
  kargs: string[];
  targetImgref: string | undefined;
  filesystem: Filesystem | undefined;
  /** `bootc_container_storage`: where podman's storage goes for this node (overrides the agent option). */
  containerStorage: ContainerStorageMode | undefined;
  /** `bootc_registry_mirrors`: this node's mirrors, over the agent's (docs/bootc-step.md). */
  registryMirrors: RegistryMirror[];
}

const StepArgs = z.looseObject({
  image_source: z.string({ error: 'image_source must be a string' }).startsWith('oci://', { error: 'image_source must be an oci:// URL (oci://host[:port]/repo[:tag|@digest])' }),
  configdrive: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  oci_pull_secret: z.string().nullish(),
});

// An authorized_keys line: optional options, then a key type and base64 blob, then an optional
// comment. Each entry is one line of root's authorized_keys: no line breaks or other control
// characters may smuggle in a second one.
const KEY_LINE = /(^|\s)(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\s+[A-Za-z0-9+/]+={0,3}(\s|$)/;
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const MAX_KEYS = 1000;
const MAX_KEY_LINE = 16 * 1024;

function invalid(key: string, message: string): never {
  throw new AgentError('DEPLOY_ARGS_INVALID', `Invalid ${key}: ${message}`, { details: { key } });
}

function parseKeys(value: unknown): string[] {
  if (value === undefined || value === null || value === '') return [];
  const lines = Array.isArray(value) ? value : typeof value === 'string' ? value.replace(/\r\n/g, '\n').split('\n') : invalid('bootc_authorized_keys', 'expected a string or a list of strings');
  if (lines.length > MAX_KEYS) invalid('bootc_authorized_keys', `${lines.length} lines, at most ${MAX_KEYS} are accepted`);
  const keys: string[] = [];
  for (const [i, raw] of lines.entries()) {
    if (typeof raw !== 'string') invalid('bootc_authorized_keys', `entry ${i} is not a string`);
    if (CONTROL.test(raw)) invalid('bootc_authorized_keys', `line ${i + 1} holds a line break or another control character`);
    if (raw.length > MAX_KEY_LINE) invalid('bootc_authorized_keys', `line ${i + 1} is longer than ${MAX_KEY_LINE} characters`);
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (!KEY_LINE.test(line)) invalid('bootc_authorized_keys', `line ${i + 1} is not an SSH public key ("${line.slice(0, 24)}…")`);
    keys.push(line);
  }
  return keys;
}

function parseStrictBool(key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null) return fallback;
  const parsed = parseBool(value);
  if (parsed === undefined) invalid(key, `expected true or false, got ${JSON.stringify(value)}`);
  return parsed;
}

// Kernel arguments reach bootc as `--karg=…` and end up in the boot loader's entries, where GRUB
// expands `$…`: each must be one printable word that cannot be read as an option or an expansion.
// The kernel's own command line holds 2048 bytes (x86), which bounds their number and length.
const MAX_KARGS_BYTES = 2048;
const KARG = /^[\x21-\x7e]+$/;
const KARG_FORBIDDEN = /[$`\\"';]/;

function parseKargs(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(/\s+/).filter(Boolean) : invalid('bootc_kargs', 'expected a list of strings');
  if (list.length > MAX_KARGS_BYTES / 2) invalid('bootc_kargs', `${list.length} arguments do not fit on a kernel command line of ${MAX_KARGS_BYTES} bytes`);
  const kargs = list.map((k, i) => {
    if (typeof k !== 'string' || !k.trim()) invalid('bootc_kargs', `entry ${i} must be a non-empty string`);
    const karg = k.trim();
    const shown = JSON.stringify(karg.slice(0, 40));
    if (!KARG.test(karg)) invalid('bootc_kargs', `entry ${i} (${shown}) must be one argument of printable characters, without whitespace or control characters`);
    if (karg.startsWith('-')) invalid('bootc_kargs', `entry ${i} (${shown}) starts with "-": it would be read as an option`);
    if (KARG_FORBIDDEN.test(karg)) invalid('bootc_kargs', `entry ${i} (${shown}) holds one of $ \` \\ " ' ; (boot loaders expand or split on them)`);
    return karg;
  });
  const bytes = kargs.reduce((n, k) => n + k.length + 1, 0);
  if (bytes > MAX_KARGS_BYTES) invalid('bootc_kargs', `${bytes} bytes do not fit on a kernel command line of ${MAX_KARGS_BYTES} bytes`);
  return kargs;
}

function parseLuks(value: unknown): { allow: boolean } {
  if (value === undefined || value === null) return { allow: true };
  const parsed = z.object({ allow_in_install_config: z.unknown().optional() }).strict().safeParse(value);
  if (!parsed.success) invalid('bootc_luks', `expected {"allow_in_install_config": true|false}: ${parsed.error.issues[0]?.message ?? ''}`);
  return { allow: parseStrictBool('bootc_luks.allow_in_install_config', parsed.data.allow_in_install_config, true) };
}

/** Parses the step's arguments and the node's `instance_info`, root device hints included. */
export function parseBootcDeployRequest(
  args: Record<string, unknown>,
  node: { instance_info?: Record<string, unknown> | null | undefined; properties?: Record<string, unknown> | null | undefined },
): BootcDeployRequest {
  const parsed = StepArgs.safeParse(args);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    invalid(String(issue.path[0] ?? 'args'), issue.message);
  }
  const ii = node.instance_info ?? {};
  if (parsed.data.configdrive !== null && parsed.data.configdrive !== undefined && typeof parsed.data.configdrive !== 'string') {
    invalid('configdrive', 'the conductor must render a configdrive dict into an ISO (gzip+base64) or a URL before sending it');
  }
  const filesystem = ii.bootc_filesystem;
  if (filesystem !== undefined && filesystem !== null && !FILESYSTEMS.includes(filesystem as Filesystem)) {
    invalid('bootc_filesystem', `expected one of ${FILESYSTEMS.join(', ')}, got ${JSON.stringify(filesystem)}`);
  }
  const target = ii.bootc_target_imgref;
  if (target !== undefined && target !== null && (typeof target !== 'string' || !/^[a-z0-9][^\s]*$/i.test(target.replace(/^oci:\/\//, '')))) {
    invalid('bootc_target_imgref', 'expected an image reference such as registry.example/os:stable');
  }
  const storage = ii.bootc_container_storage;
  if (storage !== undefined && storage !== null && !CONTAINER_STORAGE_MODES.includes(storage as ContainerStorageMode)) {
    invalid('bootc_container_storage', `expected one of ${CONTAINER_STORAGE_MODES.join(', ')}, got ${JSON.stringify(storage)}`);
  }
  const image = parseReference(parsed.data.image_source);
  const rootDevice = rootDeviceSelectionFromNode(node);
  parseRootDeviceHints(rootDevice.root_device);
  return {
    rootDevice,
    imageSource: parsed.data.image_source,
    image,
    configdrive: (parsed.data.configdrive as string | null | undefined) || null,
    auth: parsed.data.oci_pull_secret ? registryAuth(parsed.data.oci_pull_secret, image) : undefined,
    authorizedKeys: parseKeys(ii.bootc_authorized_keys),
    tpm2Luks: parseStrictBool('bootc_tpm2_luks', ii.bootc_tpm2_luks, false),
    luksAllowInInstallConfig: parseLuks(ii.bootc_luks).allow,
    kargs: parseKargs(ii.bootc_kargs),
    targetImgref: typeof target === 'string' ? target.replace(/^oci:\/\//, '') : undefined,
    filesystem: (filesystem ?? undefined) as Filesystem | undefined,
    containerStorage: (storage ?? undefined) as ContainerStorageMode | undefined,
    registryMirrors: parseNodeRegistryMirrors(ii.bootc_registry_mirrors, 'bootc_registry_mirrors'),
  };
}
