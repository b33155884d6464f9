/**
 * Loop devices for the write benchmarks: a sparse backing file in the bench temp dir, attached
 * with `losetup --find --show`, detached by its own name (never `losetup -D`).
 * @module
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { deferCleanup, requireRoot, requireTools, run } from './common.ts';
import { startBenchRegistry, type BenchRegistry } from './registry.ts';

export interface LoopDevice {
  device: string;
  backing: string;
  detach(): Promise<void>;
}

export async function attachLoop(dir: string, name: string, size: number): Promise<LoopDevice> {
  requireRoot('losetup');
  requireTools('losetup');
  const backing = join(dir, `${name}.img`);
  const handle = await open(backing, 'w');
  await handle.truncate(size);
  await handle.close();
  const { stdout } = await run('losetup', ['--find', '--show', '--', backing]);
  const device = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed "${device}"`);
  const detach = deferCleanup(async () => {
    await run('losetup', ['--detach', device], { allowFail: true });
  });
  return { device, backing, detach };
}

/**
 * The write sections' setting: a bench registry and a loop device of `size` + 16 MiB, both in
 * `dir`, for `fn`; the device is detached and the registry stopped afterwards, whatever happens.
 */
export async function withRegistryAndLoop<T>(dir: string, size: number, fn: (br: BenchRegistry, loop: LoopDevice) => Promise<T>): Promise<T> {
  const br = await startBenchRegistry(dir);
  try {
    const loop = await attachLoop(dir, 'target', size + (16 << 20));
    try {
      return await fn(br, loop);
    } finally {
      await loop.detach();
    }
  } finally {
    await br.stop();
  }
}
