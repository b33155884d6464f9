/**
 * Config drives as Ironic's conductor makes them (`genisoimage -J -r -V config-2`, gzipped,
 * base64), and reading one back from a partition without mounting it (this kernel has no
 * iso9660 or vfat): isoinfo for ISO 9660, mtools for the vfat fallback.
 * @module
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { CommandRunner } from '../../src/exec/index.ts';

export interface ConfigDriveFiles {
  meta_data: Record<string, unknown>;
  user_data?: string;
  network_data?: Record<string, unknown>;
}

/** gzip+base64 of an ISO 9660 image labelled config-2 holding openstack/latest/*. */
export async function buildConfigDrive(runner: CommandRunner, workDir: string, files: ConfigDriveFiles): Promise<{ base64: string; isoBytes: number }> {
  const dir = await mkdtemp(join(workDir, 'configdrive-'));
  try {
    const tree: Record<string, string> = {
      'openstack/latest/meta_data.json': JSON.stringify(files.meta_data),
      'openstack/latest/network_data.json': JSON.stringify(files.network_data ?? { links: [], networks: [], services: [] }),
    };
    if (files.user_data !== undefined) tree['openstack/latest/user_data'] = files.user_data;
    for (const [name, content] of Object.entries(tree)) {
      await mkdir(dirname(join(dir, 'tree', name)), { recursive: true });
      await writeFile(join(dir, 'tree', name), content);
    }
    const iso = join(dir, 'configdrive.iso');
    await runner.run('genisoimage', ['-quiet', '-o', iso, '-J', '-r', '-V', 'config-2', join(dir, 'tree')], { timeoutMs: 60_000 });
    const bytes = await readFile(iso);
    return { base64: gzipSync(bytes).toString('base64'), isoBytes: bytes.length };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1' };

/** Files of the config drive on `partition` and the content of meta_data.json. */
export async function readConfigDrive(runner: CommandRunner, partition: string, format: string): Promise<{ files: string[]; metaData: Record<string, unknown> }> {
  if (format === 'iso9660') {
    const list = await runner.run('isoinfo', ['-i', partition, '-R', '-f'], { timeoutMs: 30_000 });
    const meta = await runner.run('isoinfo', ['-i', partition, '-R', '-x', '/openstack/latest/meta_data.json'], { timeoutMs: 30_000 });
    return { files: list.stdout.split('\n').map((l) => l.trim()).filter(Boolean).sort(), metaData: JSON.parse(meta.stdout) as Record<string, unknown> };
  }
  const list = await runner.run('mdir', ['-/', '-b', '-i', partition, '::/'], { timeoutMs: 30_000, env: MTOOLS_ENV });
  const meta = await runner.run('mtype', ['-i', partition, '::/openstack/latest/meta_data.json'], { timeoutMs: 30_000, env: MTOOLS_ENV });
  return {
    files: list.stdout.split('\n').map((l) => l.trim().replace(/^::/, '')).filter(Boolean).sort(),
    metaData: JSON.parse(meta.stdout) as Record<string, unknown>,
  };
}
