/**
 * Pure argv builders for every podman call of the bootc step, kept apart from the code that
 * runs them so tests compare them against golden copies.
 * @module
 */
import type { BootcFeatures } from './bootc-version.ts';
import type { Filesystem } from './request.ts';

/** Where the read-only directory of injected files appears inside the install container. */
export const INJECT_MOUNT = '/run/bootc-agent-inject';
export const LUKS_DROPIN_TARGET = '/etc/bootc/install/90-bootc-agent-luks.toml';

/**
 * `signaturePolicy`: a policy.json for this pull only, given when the agent itself verified the
 * signatures the system policy asks for: podman finds neither OCI 1.1 referrers nor sigstore
 * bundles, so its own check would refuse the digest the agent verified.
 */
export function buildPullArgs(imageRef: string, authFile: string | undefined, signaturePolicy?: string): string[] {
  return ['pull', ...(authFile ? ['--authfile', authFile] : []), ...(signaturePolicy ? ['--signature-policy', signaturePolicy] : []), '--', imageRef];
}

/**
 * Container storage outside the host's default (the scratch area on the target disk): every
 * podman call of the step names it, and the install container sees it at the default paths.
 */
export interface ContainerStore {
  /** Bind-mounted as the install's /var/lib/containers; `<it>/storage` is the graph root. */
  containersDir: string;
  /** podman's run root and libpod temporary directory go below it. */
  runDir: string;
  /** Blob staging of the pull (TMPDIR) and the install's /var/tmp. */
  tmpDir: string;
}

/** podman's global options for a store (none for the host's default storage). */
export function storeArgs(store: ContainerStore | undefined): string[] {
  if (!store) return [];
  return ['--root', `${store.containersDir}/storage`, '--runroot', `${store.runDir}/storage`, '--tmpdir', `${store.runDir}/libpod`];
}

/** The policy of a pull whose signatures the agent verified (see buildPullArgs). */
export const VERIFIED_PULL_POLICY = '{"default":[{"type":"insecureAcceptAnything"}]}\n';

/** Probe output line naming a systemd-repart definition of the image. */
export const REPART_MARK = '### repart.d ';

/**
 * Reads `bootc --version` and the image's install configuration without privileges or network.
 * No `--rm`: podman would make the probe wait for the container's removal before exiting; the
 * step removes it by name while the install runs instead (docs/benchmarks.md has the figures).
 */
export function buildProbeArgs(imageRef: string, containerName: string): string[] {
  const script = [
    'command -v bootc >/dev/null 2>&1 || exit 127',
    'bootc --version',
    'for f in /usr/lib/bootc/install/*.toml /etc/bootc/install/*.toml; do [ -f "$f" ] && { echo "### $f"; cat "$f"; }; done',
    // bootc partitions with systemd-repart when the image has definitions (see REPART_MARK)
    `for f in /usr/lib/repart.d/* /usr/local/lib/repart.d/* /etc/repart.d/*; do [ -e "$f" ] && echo "${REPART_MARK}$f"; done`,
    'exit 0',
  ].join('; ');
  return ['run', '--name', containerName, '--pull=never', '--net=none', '--read-only', '--entrypoint', '/bin/sh', imageRef, '-c', script];
}

export interface InstallArgsInput {
  imageRef: string;
  containerName: string;
  device: string;
  rootMiB: number;
  filesystem: Filesystem | undefined;
  kargs: readonly string[];
  tpm2Luks: boolean;
  /** Host path of the directory mounted read-only at INJECT_MOUNT (keys, drop-ins). */
  injectDir: string | undefined;
  authorizedKeysFile: string | undefined;
  luksDropIn: string | undefined;
  targetImgref: string;
  selinuxEnabled: boolean;
  hostHasRunUdev: boolean;
  features: BootcFeatures;
  /** Storage outside the host's default (see ContainerStore). */
  store?: ContainerStore | undefined;
}

export function buildInstallArgs(input: InstallArgsInput): string[] {
  const podman = [
    ...storeArgs(input.store),
    'run', '--rm', '--name', input.containerName,
    '--privileged', '--pid=host', '--ipc=host', '--net=none', '--pull=never',
    '-v', '/dev:/dev',
    '-v', `${input.store?.containersDir ?? '/var/lib/containers'}:/var/lib/containers`,
    '-v', `${input.store?.tmpDir ?? '/var/tmp'}:/var/tmp`,
    ...(input.hostHasRunUdev ? ['-v', '/run/udev:/run/udev'] : []),
    ...(input.injectDir ? ['-v', `${input.injectDir}:${INJECT_MOUNT}:ro`] : []),
    ...(input.luksDropIn ? ['-v', `${input.luksDropIn}:${LUKS_DROPIN_TARGET}:ro`] : []),
    ...(input.selinuxEnabled ? ['--security-opt', 'label=type:unconfined_t'] : []),
    input.imageRef,
  ];
  const bootc = [
    'bootc', 'install', 'to-disk', '--wipe',
    ...(input.features.skipFetchCheck ? ['--skip-fetch-check'] : []),
    `--root-size=${input.rootMiB}M`,
    ...(input.filesystem ? [`--filesystem=${input.filesystem}`] : []),
    ...(input.tpm2Luks ? ['--block-setup=tpm2-luks'] : []),
    ...(input.authorizedKeysFile ? [`--root-ssh-authorized-keys=${input.authorizedKeysFile}`] : []),
    ...input.kargs.map((k) => `--karg=${k}`),
    `--target-imgref=${input.targetImgref}`,
    ...(!input.selinuxEnabled && input.features.disableSelinuxWhenHostHasNone ? ['--disable-selinux'] : []),
    input.device,
  ];
  return [...podman, ...bootc];
}

/** The install-config drop-in that lets an image whose own config allows only `direct` be encrypted. */
export function luksDropInToml(): string {
  return '# written by bootc-agent: allow tpm2-luks for this install\n[install]\nblock = ["direct", "tpm2-luks"]\n';
}
