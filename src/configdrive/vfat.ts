/**
 * IPA's vfat fallback (`_try_build_fat32_config_drive`): when an ISO cannot be used on the
 * partition (4096-byte logical sectors) or `rebuild` is asked for, format the partition vfat
 * labelled `CONFIG-2` and copy the image's files in. Everything goes through xorriso and mtools,
 * because neither iso9660 nor vfat can be mounted in every ramdisk.
 * @module
 */
import { chmod, lstat, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { AgentError, isAgentError } from '../errors.ts';
import { KiB, MiB } from '../io/sizes.ts';
import { isConfigDriveLabel, probeImage } from './probe.ts';
import { wipeSignatures, type ImageFile, type TargetPartition, type WriteDeps, type WrittenConfigDrive } from './write.ts';

export const VFAT_LABEL = 'CONFIG-2';
const META_DATA = 'openstack/latest/meta_data.json';
// mtools refuse devices whose size is not a whole number of tracks unless told not to check.
const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1' };

export interface VfatDeps extends WriteDeps {
  /** A private temp dir to extract the image's files into (removed by the caller). */
  workDir: string;
}

function rebuildFailed(step: string, partition: string, cause: unknown): unknown {
  if (isAgentError(cause) && ['CANCELLED', 'CONFIGDRIVE_TOO_LARGE', 'CONFIGDRIVE_WRITE_FAILED'].includes(cause.code)) return cause;
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new AgentError('CONFIGDRIVE_WRITE_FAILED', `Rebuilding the config drive as vfat on ${partition} failed while ${step}: ${reason}`, {
    cause,
    details: { partition, step, ...(isAgentError(cause) ? cause.details : {}) },
  });
}

// An ISO can list one extent under many names; sum the sizes before extracting into tmpfs.
async function extractedSize(image: ImageFile, deps: VfatDeps): Promise<number> {
  const { stdout } = await deps.runner.run('xorriso', ['-indev', image.path, '-dus', '/'], { signal: deps.signal });
  const kib = /^\s*(\d+)\s/m.exec(stdout);
  if (!kib) throw new Error(`cannot read the size of the ISO tree from xorriso -dus: ${JSON.stringify(stdout.slice(0, 200))}`);
  return Number(kib[1]) * KiB;
}

async function extract(image: ImageFile, dir: string, deps: VfatDeps): Promise<void> {
  if (image.format === 'iso9660') {
    await deps.runner.run('xorriso', ['-osirrox', 'on', '-indev', image.path, '-extract', '/', dir], { signal: deps.signal });
  } else {
    await deps.runner.run('mcopy', ['-s', '-n', '-i', image.path, '--', '::/*', `${dir}/`], { signal: deps.signal, env: MTOOLS_ENV, input: '' });
  }
}

// Keep plain files and directories only: a symlink in the image must not make mcopy copy a
// file of the ramdisk (e.g. /etc/shadow) onto the disk. Directories are made writable so the
// temp dir can always be removed. Returns the files (relative paths) and their total size.
async function sanitizeTree(root: string, deps: VfatDeps): Promise<{ files: string[]; bytes: number }> {
  const files: string[] = [];
  let bytes = 0;
  const walk = async (dir: string): Promise<void> => {
    await chmod(dir, 0o700);
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      const st = await lstat(path);
      if (st.isDirectory()) await walk(path);
      else if (st.isFile()) {
        files.push(relative(root, path));
        bytes += st.size;
      } else {
        deps.log.warn({ path: relative(root, path) }, 'skipping a config drive entry that is neither a file nor a directory');
        await rm(path, { force: true });
      }
    }
  };
  await walk(root);
  return { files: files.sort(), bytes };
}

async function verify(partition: string, root: string, files: string[], deps: VfatDeps): Promise<void> {
  const probe = await probeImage(partition);
  if (probe?.format !== 'vfat' || !isConfigDriveLabel(probe.label)) {
    throw new Error(`read back ${probe ? `${probe.format} labelled ${JSON.stringify(probe.label)}` : 'no FAT boot sector'}, expected vfat labelled ${VFAT_LABEL}`);
  }
  const { stdout } = await deps.runner.run('mdir', ['-/', '-b', '-i', partition, '--', '::/'], { signal: deps.signal, env: MTOOLS_ENV });
  const listed = new Set(stdout.split('\n').map((l) => l.trim().replace(/^::\//, '').toLowerCase()).filter(Boolean));
  const missing = files.filter((f) => !listed.has(f.toLowerCase()));
  if (missing.length > 0) throw new Error(`mdir does not list ${missing.slice(0, 5).join(', ')}`);
  if (files.includes(META_DATA)) {
    const { stdout: content } = await deps.runner.run('mtype', ['-i', partition, '--', `::/${META_DATA}`], { signal: deps.signal, env: MTOOLS_ENV });
    if (content !== (await readFile(join(root, META_DATA), 'utf8'))) throw new Error(`${META_DATA} read back with mtype differs from the image`);
  }
}

/**
 * Format the partition vfat `CONFIG-2` and copy the image's files into it, then verify with
 * mdir/mtype.
 * @example
 * await writeVfatConfigDrive(drive, { path: '/dev/sda4', size: 64 * MiB }, { runner, signal, log, workDir: drive.dir });
 */
export async function writeVfatConfigDrive(image: ImageFile, target: TargetPartition, deps: VfatDeps): Promise<WrittenConfigDrive> {
  const root = join(deps.workDir, 'tree');
  let step = 'extracting the image';
  try {
    if (image.format === 'iso9660') {
      const size = await extractedSize(image, deps);
      if (size > target.size) {
        throw new AgentError('CONFIGDRIVE_TOO_LARGE', `The config drive's files (${Math.ceil(size / MiB)} MiB) do not fit in ${target.path} (${Math.floor(target.size / MiB)} MiB)`, {
          details: { partition: target.path, partition_bytes: target.size, size_bytes: size },
        });
      }
    }
    await mkdir(root, { mode: 0o700 });
    await extract(image, root, deps);
    const { files, bytes } = await sanitizeTree(root, deps);
    step = 'formatting';
    await wipeSignatures(target.path, deps);
    await deps.runner.run('mkfs.vfat', ['-n', VFAT_LABEL, '--', target.path], { signal: deps.signal });
    step = 'copying the files';
    const entries = (await readdir(root)).sort().map((name) => join(root, name));
    if (entries.length > 0) {
      await deps.runner.run('mcopy', ['-s', '-i', target.path, '--', ...entries, '::/'], { signal: deps.signal, env: MTOOLS_ENV, input: '' });
    }
    step = 'verifying';
    await verify(target.path, root, files, deps);
    deps.log.info({ partition: target.path, files: files.length, bytes }, 'config drive rebuilt as vfat and verified');
    return { format: 'vfat', bytes, label: VFAT_LABEL };
  } catch (err) {
    throw rebuildFailed(step, target.path, err);
  } finally {
    await rm(root, { recursive: true, force: true }).catch((err: unknown) => deps.log.warn({ err, dir: root }, 'could not remove the extracted config drive'));
  }
}
