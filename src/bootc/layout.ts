/**
 * The root size we pass to `bootc install to-disk --root-size`, computed from the layout bootc
 * will create instead of IPA's fixed 768 MiB reserve (which leaves no room for the config drive
 * with tpm2-luks: bootc-install.md §1.4).
 * @module
 */
import { CONFIG_DRIVE_PARTITION_BYTES } from '../configdrive/index.ts';
import { AgentError } from '../errors.ts';
import { MiB } from '../io/sizes.ts';


export interface LayoutInput {
  diskBytes: number;
  arch: string;
  tpm2Luks: boolean;
  composefs?: boolean;
  /** Smallest root partition we accept. */
  minRootMiB?: number;
  /** Container storage on the disk: a scratch area of this many bytes below the config drive. */
  scratchBytes?: number | undefined;
}

export interface LayoutPlan {
  diskMiB: number;
  rootMiB: number;
  reserveMiB: number;
  parts: Record<string, number>;
  /** Where the scratch area goes (bytes from the disk's start), when one was asked for. */
  scratch?: { offsetBytes: number; sizeBytes: number };
}

// Between the root partition bootc creates and the scratch: whatever bootc rounds its sizes to,
// its root cannot reach the scratch.
export const SCRATCH_GAP_MiB = 16;

export function planLayout(input: LayoutInput): LayoutPlan {
  const diskMiB = Math.floor(input.diskBytes / MiB);
  const x86 = input.arch === 'x86_64' || input.arch === 'amd64' || input.arch === 'x64';
  const efi = x86 || input.arch === 'aarch64' || input.arch === 'arm64';
  const parts: Record<string, number> = {
    // first MiB: protective MBR + primary GPT; partitions start 1 MiB aligned
    gpt_head: 1,
    ...(x86 ? { bios_boot: 1 } : {}),
    ...(input.arch === 'ppc64le' ? { prep: 4 } : {}),
    ...(efi ? { esp: input.composefs ? 1024 : 512 } : {}),
    ...(input.tpm2Luks ? { boot: 510 } : {}),
    config_drive: CONFIG_DRIVE_PARTITION_BYTES / MiB,
    // backup GPT (33 sectors) and 1 MiB alignment of the config drive's start
    tail_slack: 2,
  };
  const reserveMiB = Object.values(parts).reduce((a, b) => a + b, 0);
  const scratchMiB = input.scratchBytes ? Math.ceil(input.scratchBytes / MiB) : 0;
  const besidesRoot = reserveMiB + (scratchMiB ? scratchMiB + SCRATCH_GAP_MiB : 0);
  const rootMiB = diskMiB - besidesRoot;
  const minRoot = input.minRootMiB ?? 1024;
  if (rootMiB < minRoot) {
    const scratchText = scratchMiB ? ` and a container-storage scratch area of ${scratchMiB} MiB (+${SCRATCH_GAP_MiB} MiB gap)` : '';
    throw new AgentError('DISK_TOO_SMALL', `Disk of ${diskMiB} MiB is too small: the layout needs ${reserveMiB} MiB${scratchText} besides a root partition of at least ${minRoot} MiB`, {
      details: { disk_mib: diskMiB, reserve_mib: reserveMiB, min_root_mib: minRoot, parts, ...(scratchMiB ? { scratch_mib: scratchMiB, scratch_gap_mib: SCRATCH_GAP_MiB } : {}) },
    });
  }
  if (!scratchMiB) return { diskMiB, rootMiB, reserveMiB, parts };
  // The scratch ends where the config drive's reserve begins (counted from the disk's end).
  const tailMiB = parts.config_drive! + parts.tail_slack!;
  const scratch = { offsetBytes: (diskMiB - tailMiB - scratchMiB) * MiB, sizeBytes: scratchMiB * MiB };
  return { diskMiB, rootMiB, reserveMiB, parts, scratch };
}
