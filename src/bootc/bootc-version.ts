/**
 * Which `bootc install to-disk` flags a given bootc version understands (bootc-install.md §1.1).
 * @module
 */
import { AgentError } from '../errors.ts';

export interface BootcVersion {
  major: number;
  minor: number;
  patch: number;
  text: string;
}

export function parseBootcVersion(output: string): BootcVersion {
  const match = /\bbootc\s+v?(\d+)\.(\d+)\.(\d+)/i.exec(output) ?? /\bv?(\d+)\.(\d+)\.(\d+)\b/.exec(output);
  if (!match) {
    throw new AgentError('BOOTC_NOT_FOUND', `Could not read a bootc version from "bootc --version": ${JSON.stringify(output.slice(0, 200))}`);
  }
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]), text: `${match[1]}.${match[2]}.${match[3]}` };
}

export function atLeast(v: BootcVersion, version: string): boolean {
  const [a = 0, b = 0, c = 0] = version.split('.').map(Number);
  if (v.major !== a) return v.major > a;
  if (v.minor !== b) return v.minor > b;
  return v.patch >= c;
}

export interface BootcFeatures {
  /** `--skip-fetch-check` turns off a registry probe that needs credentials inside the image (0.1.4–1.1.6); a no-op later. */
  skipFetchCheck: boolean;
  /** `--disable-selinux` is only needed on hosts without SELinux before 0.1.9. */
  disableSelinuxWhenHostHasNone: boolean;
  /** bootc ≥ 1.13 mirrors the host's /run/udev and fails if it does not exist (bootc#2239). */
  needsRunUdev: boolean;
}

export function bootcFeatures(v: BootcVersion, wants: { authorizedKeys: boolean }): BootcFeatures {
  if (!atLeast(v, '0.1.5')) {
    throw new AgentError('BOOTC_UNSUPPORTED', `bootc ${v.text} is too old: "install to-disk" needs bootc 0.1.5 or newer`, { details: { bootc_version: v.text } });
  }
  if (wants.authorizedKeys && !atLeast(v, '0.1.7')) {
    throw new AgentError('BOOTC_UNSUPPORTED', `bootc ${v.text} cannot inject SSH keys: --root-ssh-authorized-keys needs bootc 0.1.7 or newer`, { details: { bootc_version: v.text } });
  }
  return {
    skipFetchCheck: atLeast(v, '0.1.4') && !atLeast(v, '1.1.7'),
    disableSelinuxWhenHostHasNone: !atLeast(v, '0.1.9'),
    needsRunUdev: atLeast(v, '1.13.0'),
  };
}
