/**
 * Admission check before anything is pulled or written: will the image fit in the ramdisk's
 * memory and in the container storage? A 600 MB image "may require upwards of 10GB of RAM"
 * (Ironic docs), so failing early with the numbers beats an OOM or ENOSPC halfway.
 * @module
 */
import { AgentError } from '../errors.ts';
import { readMemAvailable, statStorage } from '../io/memory.ts';
import { MiB } from '../io/sizes.ts';


export interface AdmissionInput {
  compressedBytes: number;
  /** Known unpacked size (annotations), else estimated from the compressed size. */
  unpackedBytes?: number | undefined;
  storagePath: string;
  /** Memory kept free for the agent, podman and bootc themselves. */
  headroomBytes?: number;
  /** Test seams. */
  memAvailable?: () => Promise<number>;
  statStorage?: (path: string) => Promise<{ freeBytes: number; memoryBacked: boolean }>;
}

export interface AdmissionResult {
  compressed_bytes: number;
  estimated_unpacked_bytes: number;
  storage_free_bytes: number;
  storage_memory_backed: boolean;
  mem_available_bytes: number;
  needed_storage_bytes: number;
  needed_memory_bytes: number;
}

const fmt = (bytes: number) => `${Math.ceil(bytes / MiB)} MiB`;

export async function checkAdmission(input: AdmissionInput): Promise<AdmissionResult> {
  // gzip'd root filesystems typically unpack to 2–3× their size; assume 3× when unknown.
  const unpacked = input.unpackedBytes ?? input.compressedBytes * 3;
  const headroom = input.headroomBytes ?? 256 * MiB;
  const storage = await (input.statStorage ?? statStorage)(input.storagePath);
  const memAvailable = await (input.memAvailable ?? readMemAvailable)();
  // The compressed blob is staged while a layer is committed, then the unpacked tree stays.
  const neededStorage = unpacked + input.compressedBytes;
  const neededMemory = (storage.memoryBacked ? neededStorage : 0) + headroom;
  const result: AdmissionResult = {
    compressed_bytes: input.compressedBytes,
    estimated_unpacked_bytes: unpacked,
    storage_free_bytes: storage.freeBytes,
    storage_memory_backed: storage.memoryBacked,
    mem_available_bytes: memAvailable,
    needed_storage_bytes: neededStorage,
    needed_memory_bytes: neededMemory,
  };
  if (storage.freeBytes < neededStorage) {
    throw new AgentError('INSUFFICIENT_SPACE', `Container storage ${input.storagePath} has ${fmt(storage.freeBytes)} free but the image needs about ${fmt(neededStorage)} (${fmt(input.compressedBytes)} compressed, about ${fmt(unpacked)} unpacked)`, { details: { ...result } });
  }
  if (memAvailable < neededMemory) {
    throw new AgentError('INSUFFICIENT_MEMORY', `The ramdisk has ${fmt(memAvailable)} of memory available but the deploy needs about ${fmt(neededMemory)} (${storage.memoryBacked ? `image storage is in memory: ${fmt(neededStorage)}, plus ` : ''}${fmt(headroom)} headroom)`, { details: { ...result } });
  }
  return result;
}

export const CONTAINER_STORAGE_MODES = ['auto', 'memory', 'disk'] as const;
export type ContainerStorageMode = (typeof CONTAINER_STORAGE_MODES)[number];

export interface StorageChoiceInput extends AdmissionInput {
  mode: ContainerStorageMode;
  chosenBy: 'option' | 'instance_info';
}

export interface StorageChoice {
  mode: 'memory' | 'disk';
  chosen_by: 'auto' | 'option' | 'instance_info';
  /** Why auto chose the disk: the memory admission's refusal. */
  reason?: string;
  /** disk: the scratch area the image, podman's staging and bootc's temporary files need. */
  scratch_bytes?: number;
  admission: AdmissionResult;
}

/**
 * What a scratch area on the target disk must hold: the unpacked image and one compressed copy
 * (staged blobs), plus a tenth for filesystem overhead and 1 GiB for bootc's own temporary files.
 */
export function scratchBytesFor(compressedBytes: number, unpackedBytes: number): number {
  return Math.ceil(((unpackedBytes + compressedBytes) * 1.1 + 1024 * MiB) / MiB) * MiB;
}

/**
 * Where container storage goes, with the admission numbers. memory: `checkAdmission` as before.
 * disk: only the headroom must fit in memory. auto: memory when it is admitted, else disk (the
 * memory refusal is kept as the reason).
 */
export async function chooseContainerStorage(input: StorageChoiceInput): Promise<StorageChoice> {
  const chosenBy = input.mode === 'auto' ? 'auto' : input.chosenBy;
  let reason: string | undefined;
  if (input.mode !== 'disk') {
    try {
      return { mode: 'memory', chosen_by: chosenBy, admission: await checkAdmission(input) };
    } catch (err) {
      if (input.mode === 'memory' || !(err instanceof AgentError) || (err.code !== 'INSUFFICIENT_SPACE' && err.code !== 'INSUFFICIENT_MEMORY')) throw err;
      reason = err.message;
    }
  }
  const unpacked = input.unpackedBytes ?? input.compressedBytes * 3;
  const headroom = input.headroomBytes ?? 256 * MiB;
  const memAvailable = await (input.memAvailable ?? readMemAvailable)();
  const scratch = scratchBytesFor(input.compressedBytes, unpacked);
  const admission: AdmissionResult = {
    compressed_bytes: input.compressedBytes,
    estimated_unpacked_bytes: unpacked,
    storage_free_bytes: scratch,
    storage_memory_backed: false,
    mem_available_bytes: memAvailable,
    needed_storage_bytes: unpacked + input.compressedBytes,
    needed_memory_bytes: headroom,
  };
  if (memAvailable < headroom) {
    throw new AgentError('INSUFFICIENT_MEMORY', `The ramdisk has ${fmt(memAvailable)} of memory available but the deploy needs about ${fmt(headroom)} even with container storage on the target disk`, { details: { ...admission } });
  }
  return { mode: 'disk', chosen_by: chosenBy, ...(reason ? { reason } : {}), scratch_bytes: scratch, admission };
}
