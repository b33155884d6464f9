/**
 * What a real bootc deploy through the agent needs, set up for one test file: the stand-in
 * bootc image (test/helpers/standin-image.ts) pushed to a TLS registry with a user, the
 * registry's CA where podman and the agent's OCI client look, a sparse loop disk, a config
 * drive and an SSH key. Every piece registers its own cleanup through `onCleanup`.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandRunner } from '../../src/exec/index.ts';
import { buildConfigDrive } from '../../scripts/demo/configdrive.ts';
import { removeImagesFrom } from '../../scripts/demo/images.ts';
import { createLoopDisk, type LoopDisk } from '../../scripts/demo/loop-disk.ts';
import { newAuthorizedKey } from '../../scripts/demo/ssh-key.ts';
import type { TestRegistry } from '../helpers/registry.ts';
import { buildStandinVariant, pushStandin, standinUnavailable, startStandinRegistry } from '../helpers/standin-image.ts';
import { hasCommand } from '../helpers/tools.ts';

const TOOLS = ['losetup', 'partx', 'sfdisk', 'sgdisk', 'blkid', 'wipefs', 'genisoimage', 'isoinfo', 'mount', 'umount', 'tar'];

/** Why a real bootc deploy cannot run here, or undefined when it can. */
export function bootcDeployUnavailable(): string | undefined {
  const missing = TOOLS.filter((t) => !hasCommand(t));
  if (missing.length) return `needs ${missing.join(', ')}`;
  return standinUnavailable();
}

export type OnCleanup = (what: string, fn: () => Promise<unknown>) => void;

/** Cleanups registered through an `OnCleanup`, run last-first; `run()` throws naming each that failed. */
export function cleanupList(): { add: OnCleanup; run(): Promise<void> } {
  const cleanups: Array<{ what: string; fn: () => Promise<unknown> }> = [];
  return {
    add: (what, fn) => { cleanups.push({ what, fn }); },
    async run() {
      const failures: string[] = [];
      for (const { what, fn } of cleanups.reverse()) {
        try {
          await fn();
        } catch (err) {
          failures.push(`${what}: ${(err as Error).message}`);
        }
      }
      if (failures.length > 0) throw new Error(`cleanup failed: ${failures.join('; ')}`);
    },
  };
}

export interface BootcFixture {
  registry: TestRegistry;
  /** oci://host:port/repo:tag */
  imageSource: string;
  /** The same repository, tag `nobootc`: an image without /usr/bin/bootc. */
  noBootcSource: string;
  digest: string;
  disk: LoopDisk;
  configdrive: string;
  authorizedKey: string;
  workDir: string;
}

// The stop of a registry child that already died of a signal never resolves (its exitCode
// stays null); do not let that hang the cleanup.
function bounded(p: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise((resolve) => { timer = setTimeout(resolve, ms); })]).finally(() => clearTimeout(timer));
}

export async function setUpBootcFixture(runner: CommandRunner, onCleanup: OnCleanup, options: { repo?: string; diskGiB?: number; nodeUuid?: string } = {}): Promise<BootcFixture> {
  const repo = options.repo ?? 'os/standin';
  const workDir = await mkdtemp(join(tmpdir(), 'bootc-deploy-test-'));
  onCleanup(`remove ${workDir}`, () => rm(workDir, { recursive: true, force: true }));
  // No canaries: the stand-in's scan of the host's /tmp finds them in tsx's compile cache of
  // standin-image.ts, which is not something the agent controls.
  const [withBootc, withoutBootc] = await Promise.all([
    buildStandinVariant({ noCanaries: true }),
    buildStandinVariant({ noCanaries: true, bootc: false }),
  ]);
  const registry = await startStandinRegistry({ auth: 'basic' });
  onCleanup('stop the registry', () => bounded(registry.stop(), 10_000));
  const removeCa = await registry.installCaForPodman();
  onCleanup('remove the registry CA', removeCa);
  onCleanup(`remove ${registry.host}/* from podman storage`, () => removeImagesFrom(runner, registry.host));
  const pushed = await pushStandin(registry, repo, 'v1', withBootc);
  await pushStandin(registry, repo, 'nobootc', withoutBootc);
  const disk = await createLoopDisk(runner, workDir, (options.diskGiB ?? 5) * 1024 ** 3);
  onCleanup(`detach ${disk.device}`, () => disk.detach());
  const drive = await buildConfigDrive(runner, workDir, {
    meta_data: { uuid: options.nodeUuid ?? 'unset', name: 'test-node', public_keys: {} },
    user_data: '#cloud-config\nhostname: test-node\n',
  });
  return {
    registry,
    imageSource: `oci://${pushed.reference}`,
    noBootcSource: `oci://${registry.host}/${repo}:nobootc`,
    digest: pushed.digest,
    disk,
    configdrive: drive.base64,
    authorizedKey: newAuthorizedKey('test@bootc-agent'),
    workDir,
  };
}
