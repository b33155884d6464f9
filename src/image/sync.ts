/**
 * Getting written bytes onto the device while the download goes on. The kernel starts writing
 * back only at its dirty thresholds (GBs on a large-RAM host), so without help the whole image
 * would be flushed by the final fsync, after the download ended. A background `fdatasync` every
 * SYNC_EVERY bytes (one at a time, never awaited by the writes) overlaps that writeback with
 * the download.
 * @module
 */
import { open, type FileHandle } from 'node:fs/promises';
import { MiB } from '../io/sizes.ts';

/** Bytes between background `fdatasync`s while writing. */
export const SYNC_EVERY = 128 * MiB;

export interface BackgroundSync {
  /** Starts a sync when `position` is `every` bytes past the last one and none is running. */
  at(position: number): void;
  /** Waits for a running sync; throws what a background sync failed with. */
  finish(): Promise<void>;
  /** Waits for a running sync, whatever its outcome (the write failed anyway). */
  settle(): Promise<void>;
}

export function backgroundSync(handle: FileHandle, every: number = SYNC_EVERY): BackgroundSync {
  let running: Promise<void> | undefined;
  let failed = false;
  let error: unknown;
  let synced = 0;
  return {
    at(position) {
      if (running || failed || position - synced < every) return;
      synced = position;
      running = handle.datasync().then(() => { running = undefined; }, (err: unknown) => {
        failed = true;
        error = err;
        running = undefined;
      });
    },
    async finish() {
      await running;
      if (failed) throw error;
    },
    async settle() {
      await running;
    },
  };
}

/** fsync a path (after `qemu-img convert` wrote it). */
export async function syncPath(path: string, kind: 'block' | 'file'): Promise<void> {
  const handle = await open(path, kind === 'block' ? 'r+' : 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
