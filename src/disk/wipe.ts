/**
 * Making one disk look blank without writing it whole, as IPA's
 * `disk_utils.destroy_disk_metadata` does: the signatures of its partitions and of the disk
 * (wipefs), both GPT copies and the MBR (dd), `sgdisk --zap-all`; then the kernel forgets the
 * partitions of the table that is gone. The `erase_devices_metadata` clean step runs it on every
 * disk; a failed deploy runs it on its disk (`wipeDisk`).
 * @module
 */
import { AgentError, describeError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { syncKernelPartitions, type KernelEnvironment } from './kernel-partitions.ts';
import { runLsblk } from './lsblk.ts';

// 33 sectors of 512 bytes hold the protective MBR, the GPT header and its entries; IPA uses
// 33 for 512-byte and 5 for 4096-byte sectors, which this formula reproduces.
const GPT_BYTES = 33 * 512;

/** How many sectors the primary and the backup GPT occupy for a logical sector size. */
export function gptSectors(sectorSize: number): number {
  return Math.ceil(GPT_BYTES / sectorSize);
}

/** The two dd argument lists that zero the primary and (if there is room) the backup GPT. */
export function buildGptWipeArgs(device: string, sectorSize: number, sizeBytes: number): string[][] {
  const total = Math.floor(sizeBytes / sectorSize);
  const sectors = gptSectors(sectorSize);
  const common = [`bs=${sectorSize}`, 'if=/dev/zero', `of=${device}`];
  const args = [[...common, `count=${Math.min(sectors, total)}`, 'oflag=direct']];
  if (total > sectors) args.push([...common, `count=${sectors}`, 'oflag=direct', `seek=${total - sectors}`]);
  return args;
}

// Device paths become argv; anything not under /dev/ is refused rather than passed to dd.
function assertDevicePath(name: string): void {
  if (!/^\/dev\/[A-Za-z0-9._/-]+$/.test(name) || name.includes('..')) {
    throw new AgentError('BLOCK_DEVICE_ERROR', `Refusing to erase "${name}": not a /dev path`);
  }
}

async function readNumber(runner: CommandRunner, args: string[], signal?: AbortSignal): Promise<number> {
  const { stdout } = await runner.run('blockdev', args, { signal });
  const value = Number(stdout.trim());
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new AgentError('BLOCK_DEVICE_ERROR', `blockdev ${args.join(' ')} printed ${JSON.stringify(stdout.trim())}`);
  }
  return value;
}

export interface EraseDiskOptions extends KernelEnvironment {
  signal?: AbortSignal | undefined;
  log?: Logger | undefined;
}

/** Erase one disk's metadata (see the module comment); throws on the first failing command. */
export async function eraseDiskMetadata(runner: CommandRunner, device: string, options: EraseDiskOptions = {}): Promise<void> {
  const { signal, log } = options;
  assertDevicePath(device);
  // The partitions' signatures are wiped through their nodes: the kernel (no parsers, no udev)
  // must have the nodes where the table puts them, and none of an older table.
  await syncKernelPartitions(runner, device, { ...options, mode: 'lenient' });
  const rows = await runLsblk(runner, { signal, device });
  const partitions = rows
    .filter((r) => r.type === 'part' && `/dev/${r.kname}` !== device)
    .map((r) => `/dev/${r.kname}`)
    .sort()
    .reverse();
  for (const part of partitions) {
    assertDevicePath(part);
    await runner.run('wipefs', ['--force', '--all', '--', part], { signal });
  }
  await runner.run('wipefs', ['--force', '--all', '--', device], { signal });
  const sectorSize = await readNumber(runner, ['--getss', device], signal);
  const sizeBytes = await readNumber(runner, ['--getsize64', device], signal);
  for (const args of buildGptWipeArgs(device, sectorSize, sizeBytes)) await runner.run('dd', args, { signal });
  await runner.run('sgdisk', ['--zap-all', '--', device], { signal });
  // No table any more: the kernel's partitions of the old one are stale.
  await syncKernelPartitions(runner, device, { ...options, mode: 'lenient', table: null });
  log?.info({ device, partitions }, 'disk metadata erased');
}

export interface WipeDiskOptions extends KernelEnvironment {
  log: Logger;
  /** Usually absent: a deploy cancelled half-way must still leave its disk blank. */
  signal?: AbortSignal | undefined;
}

/**
 * Wipe the disk of a failed deploy, so no half-written OS stays behind. Never throws: returns
 * `'wiped'`, or why the wipe failed (logged as DISK_WIPE_FAILED: the disk state is unknown).
 * @example
 * const cleanup = { disk: await wipeDisk(runner, '/dev/sda', { log }) }; // { disk: 'wiped' }
 */
export async function wipeDisk(runner: CommandRunner, device: string, options: WipeDiskOptions): Promise<string> {
  try {
    await eraseDiskMetadata(runner, device, options);
    options.log.info({ device }, 'disk wiped after the failed deploy');
    return 'wiped';
  } catch (err) {
    const failure = toAgentError(err);
    const wipeError = new AgentError('DISK_WIPE_FAILED', `Wiping ${device} after the failed deploy failed too`, { cause: failure, details: { device } });
    options.log.error({ err: wipeError }, 'disk state unknown');
    return describeError(failure);
  }
}
