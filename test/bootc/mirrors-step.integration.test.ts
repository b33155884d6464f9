/**
 * execute_bootc_install through a node's registry mirror (instance_info.bootc_registry_mirrors):
 * the stand-in image on an origin registry (basic auth, the pull secret) and on a mirror (a second
 * real registry behind a TCP proxy). The mirror serves the resolve and the pull, and the result and
 * progress name it; a mirror that dies mid-pull leaves the pull to the origin and the deploy still
 * succeeds. The host's registries.conf.d is never written: the node's configuration reaches podman
 * through a private HOME under state_dir, removed after the step. The step runs with its container
 * storage on the disk (a fresh store), so every layer crosses the mirror or the origin.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { Progress, StepContext } from '../../src/commands/index.ts';
import { writeConfigDrive } from '../../src/configdrive/index.ts';
import { createBootcStep } from '../../src/bootc/register.ts';
import { isAgentError } from '../../src/errors.ts';
import { createExecaRunner, type CommandRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createOciClient, DEFAULT_CERTS_DIRS } from '../../src/oci/index.ts';
import { buildIso } from '../configdrive/fixtures.ts';
import { attachLoop, type LoopDevice } from '../helpers/loop.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import {
  buildStandinImages, pushStandin, standinUnavailable, startStandinRegistry, STANDIN_PULL_SECRET,
} from '../helpers/standin-image.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { probe, runCleanups, toolMissing } from '../helpers/tools.ts';

function skipReason(): string | undefined {
  return standinUnavailable() ?? toolMissing('genisoimage', 'sgdisk', 'blkid') ?? (process.arch !== 'x64' ? 'the stand-in layout is x86_64' : undefined);
}

describe('execute_bootc_install through a node\'s registry mirror', { skip: skipReason(), concurrency: false }, () => {
  let dir = '';
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let disk: LoopDevice;
  let configdrive = '';
  const cleanups: (() => unknown)[] = [];
  const pulled = new Set<string>();
  const realRunner = createExecaRunner();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bootc-mirrors-'));
    await buildStandinImages();
    [origin, mirror] = await Promise.all([startStandinRegistry({ auth: 'basic' }), startRegistry({ auth: 'none' })]);
    cleanups.push(() => origin.stop(), () => mirror.stop());
    cleanups.push(await origin.installCaForPodman());
    const fromOrigin = await pushStandin(origin, 'os/standin', 'latest', 'bootc');
    const fromMirror = await pushStandin(mirror, 'os/standin', 'latest', 'bootc');
    assert.equal(fromMirror.digest, fromOrigin.digest);
    disk = await attachLoop(dir, 12 * 1024);
    cleanups.push(() => disk.detach());
    configdrive = gzipSync(buildIso(dir)).toString('base64');
  });

  after(async () => {
    for (const ref of pulled) probe('podman', ['rmi', '--', ref]);
    await runCleanups(cleanups);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function runStep(proxy: TcpProxy) {
    const stateDir = join(dir, 'state');
    const pulls: string[][] = [];
    const runner: CommandRunner = {
      run(file, args, opts) {
        if (file === 'podman' && args.includes('pull')) {
          pulled.add(args.at(-1)!);
          pulls.push([...args]);
        }
        return realRunner.run(file, args, opts);
      },
    };
    const progress: Progress[] = [];
    const step = createBootcStep({
      runner,
      config: { disable_bootc_deploy: false, disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, state_dir: stateDir },
      oci: createOciClient({ certsDirs: [...DEFAULT_CERTS_DIRS, origin.certsDir], registries: { registries: [] }, policy: null }),
      writeConfigDrive: async (device, value, o) => ({ ...(await writeConfigDrive(device, value, { runner, ...o })) }),
      recordPartitionUuids: () => undefined,
      retryDelayMs: 200,
    });
    const ctx: StepContext = {
      signal: AbortSignal.timeout(600_000),
      log: createSilentLogger(),
      node: {
        uuid: '1be26c0b-03f2-4d2e-ae87-c02d7f33c124', properties: { root_device: { name: disk.device } },
        // disk mode: a fresh store on the scratch area, so podman fetches every layer (the host's
        // store already holds the stand-in's layers, built there).
        instance_info: { bootc_registry_mirrors: [{ registry: origin.host, mirror: proxy.host, insecure: true }], bootc_container_storage: 'disk' },
      },
      ports: [],
      reportProgress: (p) => progress.push(p),
    };
    const result = await step.run({ image_source: `oci://${origin.host}/os/standin:latest`, oci_pull_secret: STANDIN_PULL_SECRET, configdrive }, ctx)
      .catch((err: unknown) => {
        assert.ok(isAgentError(err), String(err));
        throw new Error(`step failed: ${err.code}: ${err.message}`);
      }) as Record<string, unknown>;
    // The node's private registries configuration is gone with the step.
    const left = existsSync(join(stateDir, 'registries')) ? await readdir(join(stateDir, 'registries')) : [];
    assert.deepEqual(left, []);
    return { result, progress, pulls };
  }

  test('the mirror serves the image; result and progress name it', async () => {
    const proxy = await startTcpProxy(mirror.host);
    cleanups.push(() => proxy.close());
    const { result, progress, pulls } = await runStep(proxy);
    assert.deepEqual(result['source'], { registry: proxy.host, repository: 'os/standin', mirror: true });
    assert.ok(progress.some((p) => JSON.stringify(p).includes(`"source":{"registry":"${proxy.host}"`)), 'a progress report names the source');
    assert.equal(pulls.length, 1);
    assert.ok(proxy.served() > 50 * 1024 * 1024, `the layers came through the mirror (${proxy.served()} bytes)`);
  });

  test('a mirror that dies mid-pull: podman fails, the step pulls again, the origin serves it, the deploy succeeds', async (t) => {
    const proxy = await startTcpProxy(mirror.host, { dieAfter: 40 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const { result, pulls } = await runStep(proxy);
    assert.ok(proxy.dead(), 'the mirror died during the pull');
    // Resolved on the mirror before it died; podman then went on to the origin.
    assert.deepEqual(result['source'], { registry: proxy.host, repository: 'os/standin', mirror: true });
    t.diagnostic(`podman pull attempts: ${pulls.length}`);
    assert.ok(pulls.length >= 2, 'podman 4.3 fails a pull whose mirror died mid-layer; the step pulled again');
    assert.match(String(result['result']), /written to device/);
  });
});
