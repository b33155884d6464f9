/**
 * Platforms: normalisation on both sides (real indexes carry `x86_64`/`aarch64`, podman-machine-os
 * and ORAS write them verbatim) and matching.
 * @module
 */

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant: string;
}

const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64', 'x86-64': 'amd64', amd64: 'amd64',
  aarch64: 'arm64', arm64: 'arm64',
  i386: '386', i686: '386', '386': '386',
  armhf: 'arm', armel: 'arm', arm: 'arm',
  ppc64le: 'ppc64le', s390x: 's390x', riscv64: 'riscv64',
};

// containerd's normalizeArch table (also regclient's): defaults collapse to "" so equal platforms compare equal.
export function normalizePlatform(p: { os?: string | undefined; architecture?: string | undefined; variant?: string | undefined }): PlatformSpec {
  const rawArch = (p.architecture ?? '').toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  let os = (p.os ?? '').toLowerCase();
  if (os === 'macos') os = 'darwin';
  const architecture = ARCH_ALIASES[rawArch] ?? rawArch;
  if (rawArch === 'armhf') variant = 'v7';
  else if (rawArch === 'armel') variant = 'v6';
  if (architecture === 'amd64') {
    if (variant === 'v1') variant = '';
  } else if (architecture === 'arm64') {
    if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
    else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
  } else if (architecture === 'arm' && rawArch === 'arm') {
    if (variant === '' || variant === '7') variant = 'v7';
    else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
  }
  return { os, architecture, variant };
}

/** The platform this agent runs on, in OCI terms. */
export function hostPlatform(arch: string = process.arch): PlatformSpec {
  const map: Record<string, string> = { x64: 'amd64', ia32: '386', ppc64: 'ppc64le' };
  return normalizePlatform({ os: 'linux', architecture: map[arch] ?? arch });
}

/**
 * How well `candidate` fits `wanted`: 0 exact, 1 candidate without variant, 2 candidate without
 * platform at all (artifacts often have none); undefined when it does not fit.
 */
export function platformScore(wanted: PlatformSpec, candidate: Partial<PlatformSpec> | undefined): number | undefined {
  if (!candidate || (!candidate.architecture && !candidate.os)) return 2;
  const c = normalizePlatform(candidate);
  if (c.os !== '' && c.os !== wanted.os) return undefined;
  if (c.architecture !== '' && c.architecture !== wanted.architecture) return undefined;
  if (c.variant === wanted.variant) return 0;
  if (c.variant === '') return 1;
  return undefined;
}

export function formatPlatform(p: PlatformSpec): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== '').join('/');
}
