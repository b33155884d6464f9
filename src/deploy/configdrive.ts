/**
 * A step's config drive is loaded — downloaded under a total deadline, size-limited, decoded
 * and checked — before the disk is touched, so a bad one fails the step with the disk as it
 * was; the step writes the loaded copy at the end (./finish.ts) and disposes of it either way.
 * @module
 */
import { mkdir } from 'node:fs/promises';
import { loadConfigDrive, type LoadedConfigDrive } from '../configdrive/index.ts';
import type { Config } from '../config/index.ts';
import { readCaFile } from '../io/ca-file.ts';
import type { Logger } from '../log/index.ts';
import type { StepRun } from './phased-step.ts';

/**
 * The TLS settings config-drive URLs are fetched with (the same as image URLs'), and `state_dir`,
 * where the loaded drive is kept: an agent killed mid-deploy removes what it finds there when it
 * starts again.
 */
export type ConfigDriveSettings = Partial<Pick<Config, 'insecure' | 'ca_file' | 'state_dir'>>;

/** The loaded config drive, or null when the step has none. */
export async function preloadConfigDrive(value: string | null | undefined, settings: ConfigDriveSettings, run: StepRun<string>, signal = run.signal): Promise<LoadedConfigDrive | null> {
  if (!value) return null;
  const ca = await readCaFile(settings.ca_file);
  if (settings.state_dir) await mkdir(settings.state_dir, { recursive: true, mode: 0o700 });
  run.log.info('loading the config drive before the disk is touched');
  return loadConfigDrive(value, { signal, log: run.log, insecure: settings.insecure ?? false, ca, tmpDir: settings.state_dir });
}

/** Removes a loaded config drive's temporary files; never fails the step. */
export async function disposeConfigDrive(drive: Promise<LoadedConfigDrive | null> | undefined, log: Logger): Promise<void> {
  const loaded = await drive?.catch(() => null);
  await loaded?.dispose().catch((err: unknown) => log.warn({ err, dir: loaded.dir }, 'could not remove the config drive temp dir'));
}
