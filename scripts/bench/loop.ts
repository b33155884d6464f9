/**
 * Loop devices for the write benchmarks: a sparse backing file in the bench temp dir, attached
 * with `losetup --find --show`, detached by its own name (never `losetup -D`).
 * @module
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { deferCleanup, requireRoot, requireTools, run } from './common.ts';

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
