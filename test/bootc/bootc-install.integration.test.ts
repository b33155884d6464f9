/**
 * The `execute_bootc_install` step end to end on real components: a docker-registry with TLS and
 * htpasswd (and one with token auth), the real OCI client, the real command runner, rootful
 * podman, the bootc stand-in image (test/helpers/standin-image.ts) and a sparse 12 GiB file on a
 * loop device. Each test drives the step through its StepDefinition and then reads the disk
 * back: partition table, free tail, the config drive's files, SSH keys and kernel arguments in
 * the root filesystem.
 *
 * Failure cases check the error code, that a disk the step had chosen is left without a
 * partition table (a marker table is laid down first), that failures before the disk phase
 * leave the disk alone, and that no install/probe container and no auth file stay behind.
 *
 * Needs root, podman, skopeo, docker-registry, debootstrap (first build), genisoimage, isoinfo;
 * skipped with the reason otherwise. Only this file's loop devices, mounts, containers and
 * registry processes are touched, and they are removed in `after` even when a test fails.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Transform } from 'node:stream';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { Progress, StepContext, StepDefinition } from '../../src/commands/index.ts';
import { writeConfigDrive } from '../../src/configdrive/index.ts';
import { createBootcStep } from '../../src/bootc/register.ts';
import type { BootcStepDeps } from '../../src/bootc/deps.ts';
import { isAgentError, type AgentError } from '../../src/errors.ts';
import { createExecaRunner, type CommandRunner } from '../../src/exec/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { createOciClient, DEFAULT_CERTS_DIRS, parsePolicy, type Credentials } from '../../src/oci/index.ts';
import { buildIso, META_DATA } from '../configdrive/fixtures.ts';
import type { TestRegistry } from '../helpers/registry.ts';
import { makeBundle, makeKey, pushBundleReferrer } from '../helpers/signatures.ts';
import {
  buildStandinImages, buildStandinVariant, pushForeignArchImage, pushNotBootable, pushStandin, standinUnavailable, startStandinRegistry,
  STANDIN_BOOTC_VERSION, STANDIN_CANARIES, STANDIN_PULL_SECRET, STANDIN_REGISTRY_USERNAME,
} from '../helpers/standin-image.ts';
import { layMarkerTable, partitionLines } from '../helpers/loop.ts';
import { probe, runCleanups, sh, toolMissing } from '../helpers/tools.ts';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl deployer@example';
const PHASES = ['resolve', 'admission', 'disk', 'pull', 'probe', 'install', 'verify', 'configdrive', 'done'];
const ROOT_GUID_X86_64 = '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709';

function skipReason(): string | undefined {
  const base = standinUnavailable();
  if (base) return base;
  const missing = toolMissing('genisoimage', 'isoinfo', 'sgdisk', 'mount', 'umount', 'blkid');
  if (missing) return missing;
  if (process.arch !== 'x64') return 'the assertions below describe the x86_64 layout';
  return undefined;
}

/** A sparse file on a loop device, detached (with its partition nodes) by `dispose`. */
async function attachLoop(dir: string, name: string, bytes: number): Promise<{ dev: string; dispose(): void }> {
  const file = join(dir, name);
  await writeFile(file, '');
  await truncate(file, bytes);
  const dev = sh('losetup', ['--find', '--show', file]).trim();
  assert.match(dev, /^\/dev\/loop\d+$/);
  return {
    dev,
    dispose() {
      probe('partx', ['-d', '--', dev]);
      probe('losetup', ['-d', dev]);
    },
  };
}

function assertWiped(dev: string): void {
  assert.deepEqual(partitionLines(dev), [], `${dev} still has partitions`);
  assert.equal(probe('blkid', ['-p', dev]).status, 2, `${dev}: blkid still finds a signature`);
}

/**
 * A TCP proxy in front of the registry that can go "down": it then resets every connection.
 * `downAfterBytes` takes it down once that many bytes went from the registry to clients.
 */
interface Proxy {
  host: string;
  up: boolean;
  bytes: number;
  downAfterBytes: number | undefined;
  resets: number;
  setUp(up: boolean): void;
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const sockets = new Set<Socket>();
  const state: Proxy = {
    host: '', up: true, bytes: 0, downAfterBytes: undefined, resets: 0,
    setUp(up) {
      state.up = up;
      if (!up) for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server: Server = createServer((client) => {
    if (!state.up) {
      state.resets++;
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(Number(targetPort), targetHost);
    sockets.add(client).add(upstream);
    const drop = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    // Counts registry → client bytes; the pipes end each side gracefully so no data is lost.
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        state.bytes += chunk.length;
        if (state.downAfterBytes !== undefined && state.bytes >= state.downAfterBytes) {
          state.downAfterBytes = undefined;
          state.setUp(false);
          callback();
          return;
        }
        callback(null, chunk);
      },
    });
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', () => sockets.delete(upstream));
    client.pipe(upstream);
    upstream.pipe(counter).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return state;
}

interface RunOutcome {
  result?: Record<string, unknown>;
  error?: AgentError;
  progress: Progress[];
  logs: string;
  containers: string[];
  commands: string[][];
  ms: number;
}

describe('execute_bootc_install end to end (stand-in image, real registry, loop device)', { concurrency: false }, () => {
  const reason = skipReason();
  const realRunner = createExecaRunner();
  let dir = '';
  let stateDir = '';
  let registry: TestRegistry | undefined;
  let tokenRegistry: TestRegistry | undefined;
  let disk: { dev: string; dispose(): void } | undefined;
  let small: { dev: string; dispose(): void } | undefined;
  let proxy: Proxy | undefined;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const pulled = new Set<string>();
  let configdrive = '';
  let standinDigest = '';

  before(async () => {
    if (reason) return;
    dir = await mkdtemp(join(tmpdir(), 'bootc-it-'));
    stateDir = join(dir, 'state');
    await buildStandinImages();
    registry = await startStandinRegistry({ auth: 'basic' });
    cleanups.push(() => registry?.stop());
    cleanups.push(await registry.installCaForPodman());
    standinDigest = (await pushStandin(registry, 'os/standin', 'latest', 'bootc')).digest;
    await pushStandin(registry, 'os/nobootc', 'latest', 'noBootc');
    await pushNotBootable(registry, 'os/readme', 'v1');
    await pushForeignArchImage(registry, 'os/foreign', 'latest');
    disk = await attachLoop(dir, 'disk.img', 12 * GiB);
    cleanups.push(() => disk?.dispose());
    small = await attachLoop(dir, 'small.img', 1 * GiB);
    cleanups.push(() => small?.dispose());
    configdrive = gzipSync(buildIso(dir)).toString('base64');
  });

  after(async () => {
    // podman records every pulled reference as a name of the (shared) image: drop ours.
    for (const ref of pulled) probe('podman', ['rmi', '--', ref]);
    await runCleanups(cleanups);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // The step's own view: args as the conductor sends them, node with hints for our loop device.
  async function runStep(options: {
    args?: Record<string, unknown>;
    instanceInfo?: Record<string, unknown>;
    device?: string;
    runner?: CommandRunner;
    deps?: Partial<BootcStepDeps>;
    oci?: BootcStepDeps['oci'];
    onProgress?: (p: Progress, abort: AbortController) => void;
  } = {}): Promise<RunOutcome> {
    const progress: Progress[] = [];
    const logLines: string[] = [];
    const containers: string[] = [];
    const commands: string[][] = [];
    const base = options.runner ?? realRunner;
    const runner: CommandRunner = {
      run(file, args, opts) {
        commands.push([file, ...args]);
        if (file === 'podman' && args.includes('pull')) pulled.add(args.at(-1)!);
        const i = args.indexOf('--name');
        if (file === 'podman' && i >= 0 && args[i + 1]) containers.push(args[i + 1]!);
        return base.run(file, args, opts);
      },
    };
    const log = createLogger({ level: 'debug', stream: { write: (line: string) => { logLines.push(line); } } });
    const abort = new AbortController();
    const step: StepDefinition = createBootcStep({
      runner,
      config: { disable_bootc_deploy: false, disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, state_dir: stateDir },
      oci: options.oci ?? createOciClient({ log, certsDirs: [...DEFAULT_CERTS_DIRS, registry!.certsDir, ...(tokenRegistry ? [tokenRegistry.certsDir] : [])] }),
      writeConfigDrive: async (device, value, o) => ({ ...(await writeConfigDrive(device, value, { runner, ...o })) }),
      recordPartitionUuids: () => undefined,
      retryDelayMs: 500,
      ...options.deps,
    });
    const ctx: StepContext = {
      signal: abort.signal,
      log,
      node: { uuid: '1be26c0b-03f2-4d2e-ae87-c02d7f33c123', properties: { root_device: { name: options.device ?? disk!.dev } }, instance_info: options.instanceInfo ?? {} },
      ports: [],
      reportProgress: (p) => {
        progress.push(p);
        options.onProgress?.(p, abort);
      },
    };
    const started = performance.now();
    const outcome: RunOutcome = { progress, logs: '', containers, commands, ms: 0 };
    try {
      outcome.result = await step.run({ image_source: `oci://${registry!.host}/os/standin:latest`, oci_pull_secret: STANDIN_PULL_SECRET, ...options.args }, ctx) as Record<string, unknown>;
    } catch (err) {
      assert.ok(isAgentError(err), `not an AgentError: ${String(err)}`);
      outcome.error = err;
    }
    outcome.ms = performance.now() - started;
    outcome.logs = logLines.join('');
    return outcome;
  }

  // What every run must leave behind: no containers, no auth files, no secret in the logs.
  async function assertClean(outcome: RunOutcome): Promise<void> {
    for (const name of outcome.containers) {
      assert.equal(probe('podman', ['container', 'exists', name]).status, 1, `container ${name} was left behind`);
    }
    const secrets = join(stateDir, 'secrets');
    if (existsSync(secrets)) {
      const left = (await readdir(secrets, { recursive: true })).filter(Boolean);
      assert.deepEqual(left, [], 'auth files were left behind');
    }
    const injects = existsSync(stateDir) ? (await readdir(stateDir)).filter((f) => f.startsWith('inject-')) : [];
    assert.deepEqual(injects, [], 'inject directories were left behind');
    for (const canary of STANDIN_CANARIES) assert.ok(!outcome.logs.includes(canary), 'a registry secret reached the log');
  }

  // 65 MiB of ISO: compresses to almost nothing, decodes past the 64 MiB limit.
  function bigConfigdrive(): string {
    const iso = buildIso(dir, { files: { 'openstack/latest/meta_data.json': '{}', 'openstack/latest/pad': Buffer.alloc(65 * MiB) } });
    return gzipSync(iso).toString('base64');
  }

  // An HTTP server on port 0 that answers 404 to everything; closed in `after`.
  async function notFoundServer(): Promise<string> {
    const server = createHttpServer((_req, res) => res.writeHead(404).end('not found'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  // An HTTP server on port 0 that answers every request with `status` and `body`.
  async function pageServer(status: number, body: string): Promise<string> {
    const server = createHttpServer((_req, res) => res.writeHead(status, { 'content-type': 'text/html' }).end(body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  // A machine without podman: every podman call fails as a missing command does.
  function withoutPodman(): CommandRunner {
    return { run: (file, args, opts) => realRunner.run(file === 'podman' ? 'bootc-agent-it-no-such-podman' : file, args, opts) };
  }

  // The pull (and only the pull) goes to `host`, where no registry answers.
  function pullFrom(host: string): CommandRunner {
    return {
      run: (file, args, opts) => realRunner.run(file, file === 'podman' && args.includes('pull')
        ? args.map((a) => a.replace(registry!.host, host))
        : args, opts),
    };
  }

  function phasesOf(outcome: RunOutcome): string[] {
    return outcome.progress.map((p) => p.phase).filter((p, i, all) => all.indexOf(p) === i);
  }

  // Mount the root filesystem read-only for the duration of `fn`.
  async function withRootMounted<T>(partition: string, fn: (root: string) => Promise<T>): Promise<T> {
    const mnt = await mkdtemp(join(dir, 'mnt-'));
    sh('mount', ['-o', 'ro', partition, mnt]);
    try {
      return await fn(mnt);
    } finally {
      probe('umount', [mnt]);
      await rm(mnt, { recursive: true, force: true });
    }
  }

  test('installs, writes the config drive at the end, keys and kargs land where bootc puts them', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.dev;
    layMarkerTable(dev);
    const outcome = await runStep({
      args: { configdrive },
      instanceInfo: { bootc_authorized_keys: KEY, bootc_kargs: ['console=ttyS0,115200', 'quiet'] },
    });
    assert.equal(outcome.error, undefined, outcome.error && `${outcome.error.code}: ${outcome.error.message} ${JSON.stringify(outcome.error.details).slice(0, 2000)}`);
    t.diagnostic(`install took ${Math.round(outcome.ms)} ms; phases ${JSON.stringify(outcome.result?.timings_ms)}`);
    await assertClean(outcome);
    const r = outcome.result!;
    assert.equal(r.device, dev);
    assert.equal(r.image_digest, standinDigest);
    assert.equal(r.bootc_version, STANDIN_BOOTC_VERSION);
    assert.equal(r.target_imgref, `${registry!.host}/os/standin:latest`);
    assert.match(String(r.result), /written to device/);
    assert.deepEqual(phasesOf(outcome), PHASES);
    const milestones = outcome.progress.filter((p) => p.phase === 'install').map((p) => p.message);
    for (const m of ['installing image', 'partitioning', 'creating root filesystem', 'injecting files', 'installation complete']) {
      assert.ok(milestones.includes(m), `milestone ${m} missing from ${milestones.join(', ')}`);
    }
    const pull = outcome.progress.filter((p) => p.phase === 'pull').at(-1)!;
    assert.equal(pull.bytes_done, pull.bytes_total);

    // bootc's layout, then the config drive in the reserved tail.
    const lines = partitionLines(dev);
    assert.equal(lines.length, 4, lines.join('\n'));
    assert.match(lines[0]!, /EF02\s+BIOS-BOOT$/);
    assert.match(lines[1]!, /512\.0 MiB\s+EF00\s+EFI-SYSTEM$/);
    assert.match(lines[2]!, /8304\s+root$/);
    // IPA's `sgdisk -n 0:-64MB:0` gives 65 MiB after alignment too
    assert.match(lines[3]!, /6[45]\.\d MiB\s+8300\s+config-2$/);
    const parts = r.partitions as { node: string; type: string; name: string; size_bytes: number; start_bytes: number }[];
    assert.equal(parts[2]!.type, ROOT_GUID_X86_64);
    assert.equal(parts[2]!.size_bytes, (r.root_size_mib as number) * MiB);
    assert.ok((r.free_tail_bytes as number) < 4 * MiB, `free tail ${String(r.free_tail_bytes)}`);
    const uuids = r.partition_uuids as Record<string, string>;
    assert.ok(uuids['root uuid'] && uuids['efi system partition uuid']);

    // The config drive reads back without mounting.
    const cd = (r.configdrive as { partition: { path: string } }).partition.path;
    assert.equal(cd, `${dev}p4`);
    assert.match(probe('blkid', ['-p', cd]).stdout, /LABEL="config-2".*TYPE="iso9660"/);
    assert.deepEqual(JSON.parse(sh('isoinfo', ['-i', cd, '-R', '-x', '/openstack/latest/meta_data.json'])), META_DATA);

    // Keys via tmpfiles.d in the deployment, kargs in the loader entry, target in the origin.
    await withRootMounted(`${dev}p3`, async (root) => {
      const deployDir = join(root, 'ostree/deploy/default/deploy');
      const deployment = (await readdir(deployDir)).find((d) => d.endsWith('.0'))!;
      const tmpfiles = await readFile(join(deployDir, deployment, 'etc/tmpfiles.d/bootc-root-ssh.conf'), 'utf8');
      const line = tmpfiles.split('\n').find((l) => l.startsWith('f~ /root/.ssh/authorized_keys 600 root root - '))!;
      assert.ok(line, tmpfiles);
      assert.equal(Buffer.from(line.split(' ').at(-1)!, 'base64').toString(), `${KEY}\n`);
      const entry = await readFile(join(root, 'boot/loader/entries/ostree-1.conf'), 'utf8');
      const options = /^options (.*)$/m.exec(entry)![1]!.split(' ');
      assert.ok(options.includes('console=ttyS0,115200') && options.includes('quiet'), entry);
      assert.ok(options.some((o) => /^root=UUID=[0-9a-f-]{36}$/.test(o)), entry);
      const origin = await readFile(join(deployDir, `${deployment}.origin`), 'utf8');
      assert.match(origin, new RegExp(`container-image-reference=ostree-unverified-registry:${registry!.host}/os/standin:latest`));
      assert.match(sh('blkid', ['-p', '-s', 'TYPE', '-o', 'value', `${dev}p3`]), /xfs/);
    });
  });

  test('token auth registry, ext4, tpm2-luks layout with /boot, target imgref override, no config drive', async (t) => {
    if (reason) return t.skip(reason);
    tokenRegistry = await startStandinRegistry({ auth: 'token' });
    cleanups.push(() => tokenRegistry?.stop());
    cleanups.push(await tokenRegistry.installCaForPodman());
    const pushed = await pushStandin(tokenRegistry, 'os/standin', 'v2', 'bootc');
    const outcome = await runStep({
      args: { image_source: `oci://${tokenRegistry.host}/os/standin:v2` },
      instanceInfo: { bootc_filesystem: 'ext4', bootc_tpm2_luks: true, bootc_target_imgref: 'registry.example/os/standin:stable' },
    });
    assert.equal(outcome.error, undefined, outcome.error && `${outcome.error.code}: ${outcome.error.message}`);
    await assertClean(outcome);
    const r = outcome.result!;
    assert.equal(r.image_digest, pushed.digest);
    assert.equal(r.target_imgref, 'registry.example/os/standin:stable');
    assert.ok(outcome.commands.some((c) => c.includes('--block-setup=tpm2-luks') && c.includes('--filesystem=ext4')));
    const lines = partitionLines(disk!.dev);
    assert.equal(lines.length, 4, lines.join('\n'));
    assert.match(lines[2]!, /510\.0 MiB\s+8300\s+boot$/);
    assert.match(lines[3]!, /8304\s+root$/);
    assert.match(probe('blkid', ['-p', `${disk!.dev}p4`]).stdout, /TYPE="crypto_LUKS"/);
    // The reserve left for a config drive survives the extra /boot (IPA's fixed 768 MiB does not).
    assert.ok((r.free_tail_bytes as number) >= 64 * MiB, `free tail ${String(r.free_tail_bytes)}`);
    await withRootMounted(`${disk!.dev}p3`, async (boot) => {
      const entry = await readFile(join(boot, 'loader/entries/ostree-1.conf'), 'utf8');
      assert.match(entry, /luks\.uuid=[0-9a-f-]{36} luks\.options=tpm2-device=auto,headless=true/);
    });
  });

  test('the registry going down mid-pull is retried and the deploy succeeds', async (t) => {
    if (reason) return t.skip(reason);
    proxy = await startProxy(registry!.host);
    cleanups.push(() => proxy?.close());
    // podman verifies the proxy's host:port against certs.d: the registry's CA serves for it.
    const certs = join('/etc/containers/certs.d', proxy.host);
    execFileSync('mkdir', ['-p', certs]);
    await writeFile(join(certs, 'ca.crt'), registry!.cert.cert);
    cleanups.push(() => rm(certs, { recursive: true, force: true }));
    const proxyCerts = await mkdtemp(join(dir, 'proxy-certs-'));
    execFileSync('mkdir', ['-p', join(proxyCerts, proxy.host)]);
    await writeFile(join(proxyCerts, proxy.host, 'ca.crt'), registry!.cert.cert);

    // A layer this host does not have yet, so the pull really downloads (the stand-in's own
    // layers are in local storage already: pulls of it only fetch manifest and config).
    const overlay = await mkdtemp(join(dir, 'outage-overlay-'));
    await mkdir(join(overlay, 'usr/share/standin'), { recursive: true });
    await writeFile(join(overlay, 'usr/share/standin/noise.bin'), randomBytes(8 * MiB));
    const local = await buildStandinVariant({ overlayDir: overlay, name: 'localhost/bootc-standin-outage' });
    const imageId = sh('podman', ['image', 'inspect', '--format', '{{.Id}}', local]).trim();
    cleanups.push(() => probe('podman', ['rmi', '--ignore', '--', imageId]));
    await pushStandin(registry!, 'os/outage', 'latest', local);
    sh('podman', ['rmi', '--', local]);

    let pullFailures = 0;
    const runner: CommandRunner = {
      async run(file, args, opts) {
        const isPull = file === 'podman' && args.includes('pull');
        if (isPull && pullFailures === 0) proxy!.downAfterBytes = proxy!.bytes + 2 * MiB;
        try {
          return await realRunner.run(file, args, opts);
        } catch (err) {
          if (isPull) {
            pullFailures++;
            proxy!.setUp(true);
          }
          throw err;
        }
      },
    };
    layMarkerTable(disk!.dev);
    const outcome = await runStep({
      runner,
      args: { image_source: `oci://${proxy.host}/os/outage:latest` },
      oci: createOciClient({ certsDirs: [...DEFAULT_CERTS_DIRS, proxyCerts] }),
    });
    assert.equal(outcome.error, undefined, outcome.error && `${outcome.error.code}: ${outcome.error.message} (attempt ${String(outcome.error.details.attempt)}, ${pullFailures} failed pulls)`);
    assert.equal(pullFailures, 1, 'the first pull failed while the registry was down');
    assert.ok(proxy.bytes > 8 * MiB, `only ${proxy.bytes} bytes went through the proxy`);
    assert.match(outcome.logs, /pull failed; retrying/);
    await assertClean(outcome);
    assert.equal(partitionLines(disk!.dev).length, 3);
  });

  // Failures found before a disk is chosen leave the disk as it was.
  const earlyFailures: [string, () => Record<string, unknown>, string][] = [
    ['wrong password', () => ({ oci_pull_secret: Buffer.from(Buffer.from(`${STANDIN_REGISTRY_USERNAME}:wrong-password`).toString('base64')).toString('base64') }), 'REGISTRY_AUTH_FAILED'],
    ['no credentials', () => ({ oci_pull_secret: undefined }), 'REGISTRY_AUTH_FAILED'],
    ['tag not found', () => ({ image_source: `oci://${registry!.host}/os/standin:no-such-tag` }), 'REGISTRY_NOT_FOUND'],
    ['image for another architecture only', () => ({ image_source: `oci://${registry!.host}/os/foreign:latest` }), 'OCI_PLATFORM_NOT_FOUND'],
    ['an OCI artifact, not a bootable image', () => ({ image_source: `oci://${registry!.host}/os/readme:v1` }), 'IMAGE_NOT_BOOTABLE'],
    ['a configdrive that is not base64+gzip', () => ({ configdrive: 'H4sI!!not base64 at all' }), 'CONFIGDRIVE_INVALID'],
    ['a configdrive over 64 MiB', () => ({ configdrive: bigConfigdrive() }), 'CONFIGDRIVE_TOO_LARGE'],
  ];
  for (const [name, args, code] of earlyFailures) {
    test(`fails early with ${code}: ${name}; the disk is not touched`, async (t) => {
      if (reason) return t.skip(reason);
      layMarkerTable(disk!.dev);
      const outcome = await runStep({ args: args() });
      assert.equal(outcome.error?.code, code, outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
      assert.ok(!phasesOf(outcome).includes('pull'), `reached ${phasesOf(outcome).join(',')}`);
      assert.equal(partitionLines(disk!.dev).length, 2, 'the marker table is still there');
      await assertClean(outcome);
    });
  }

  // Failures found before anything is written leave the disk exactly as it was (issue 13,
  // findings 8, 10 and 11): the marker table survives, and nothing reports a cleanup of the disk.
  const untouchedFailures: [string, Parameters<typeof runStep>[0] & {}, string, string][] = [
    ['an image without bootc', { args: { image_source: `oci://${'REG'}/os/nobootc:latest` } }, 'BOOTC_NOT_FOUND', 'probe'],
    ['a config drive URL that answers 404', { args: { configdrive: 'URL404' } }, 'CONFIGDRIVE_DOWNLOAD_FAILED', 'resolve'],
    ['podman missing', { runner: withoutPodman() }, 'COMMAND_NOT_FOUND', 'pull'],
    ['the registry unreachable at pull', { runner: pullFrom('127.0.0.1:9') }, 'IMAGE_PULL_FAILED', 'pull'],
  ];
  for (const [name, options, code, phase] of untouchedFailures) {
    test(`fails with ${code} in phase ${phase}: ${name}; the disk is left as it was`, async (t) => {
      if (reason) return t.skip(reason);
      layMarkerTable(disk!.dev);
      const args = { ...options.args };
      if (typeof args.image_source === 'string') args.image_source = args.image_source.replace('REG', registry!.host);
      if (args.configdrive === 'URL404') args.configdrive = `${await notFoundServer()}/configdrive.iso.gz`;
      const outcome = await runStep({ ...options, args });
      assert.equal(outcome.error?.code, code, outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
      assert.equal(outcome.error!.details.phase, phase);
      assert.match(outcome.error!.message, new RegExp(`failed in phase ${phase}`));
      assert.equal(outcome.error!.details.cleanup, undefined, 'nothing was written, so nothing was wiped');
      assert.equal(partitionLines(disk!.dev).length, 2, 'the marker table is still there');
      await assertClean(outcome);
    });
  }

  test('a config drive URL answering a long HTML page: the cause once, a short excerpt, before the disk', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!.dev);
    const page = `<html><head><title>Gone</title></head><body>${'<p>lorem ipsum dolor sit amet</p>'.repeat(2000)}</body></html>`;
    const url = await pageServer(404, page);
    const outcome = await runStep({ args: { configdrive: `${url}/configdrive.iso.gz?temp_url_sig=s3cret` } });
    assert.equal(outcome.error?.code, 'CONFIGDRIVE_DOWNLOAD_FAILED', outcome.error?.message);
    assert.equal(outcome.error!.details.phase, 'resolve');
    const message = outcome.error!.message;
    assert.ok(message.length < 600, `a ${message.length}-character message`);
    assert.equal(message.match(/status code 404/g)?.length, 1, message);
    assert.match(message, /Response body: Gone lorem ipsum/);
    assert.ok(!message.includes('<p>') && !message.includes('s3cret'), message);
    assert.ok(!outcome.commands.some((c) => c[0] === 'podman' && c.includes('pull')), 'a pull was started');
    assert.equal(partitionLines(disk!.dev).length, 2, 'the marker table is still there');
  });

  test('fails with BOOTC_INSTALL_FAILED in phase install: bootc failing half way (mkfs); the disk is wiped', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!.dev);
    const outcome = await runStep({ instanceInfo: { bootc_kargs: ['standin.fail=rootfs'] } });
    assert.equal(outcome.error?.code, 'BOOTC_INSTALL_FAILED', outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
    assert.equal(outcome.error!.details.phase, 'install');
    assert.match(outcome.error!.message, /failed in phase install/);
    assert.equal((outcome.error!.details.cleanup as { disk?: string }).disk, 'wiped');
    assertWiped(disk!.dev);
    await assertClean(outcome);
    assert.match(String(outcome.error!.details.stderr_tail), /stand-in failure injected at 'rootfs'/);
  });

  test('fails with DISK_TOO_SMALL on a 1 GiB disk and leaves its table', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(small!.dev);
    const outcome = await runStep({ device: small!.dev });
    assert.equal(outcome.error?.code, 'DISK_TOO_SMALL', outcome.error?.message);
    assert.equal(outcome.error!.details.phase, 'disk');
    assert.equal(outcome.error!.details.cleanup, undefined);
    assert.equal(partitionLines(small!.dev).length, 2, 'the marker table is still there');
    await assertClean(outcome);
  });

  // Issue 14: container storage on a scratch area in the target disk's tail.
  const loopsOn = (dev: string) => sh('losetup', ['-j', dev, '-nO', 'NAME']).split('\n').filter(Boolean);
  async function mountsUnder(path: string): Promise<string[]> {
    return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(path));
  }
  // A tmpfs smaller than the unpacked image: the memory storage the deploy is allowed.
  async function smallTmpfs(mib: number): Promise<string> {
    const path = await mkdtemp(join(dir, 'small-storage-'));
    sh('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', path]);
    cleanups.push(() => probe('umount', [path]));
    return path;
  }
  function assertScratchGone(dev: string): Promise<void> {
    assert.deepEqual(loopsOn(dev), [], 'a loop device on the disk was left behind');
    return mountsUnder('/run/bootc-scratch-').then(async (m) => {
      assert.deepEqual(m, [], 'a scratch mount was left behind');
      assert.deepEqual((await readdir('/run')).filter((f) => f.startsWith('bootc-scratch-') || f.startsWith('bootc-grow-')), [], 'a scratch directory was left behind');
    });
  }

  test('container storage on the disk: an image larger than the memory storage deploys, root grown over the scratch, config drive last', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.dev;
    layMarkerTable(dev);
    const storagePath = await smallTmpfs(16);
    const repo = `os/scratch-${randomBytes(3).toString('hex')}`;
    const pushed = await pushStandin(registry!, repo, 'latest', 'bootc');
    const varTmpBefore = new Set(await readdir('/var/tmp'));
    const staged: string[] = [];
    const outcome = await runStep({
      args: { configdrive, image_source: `oci://${pushed.reference}` },
      deps: { storagePath, memAvailable: async () => 64 * GiB },
      onProgress: (p) => {
        if (p.phase === 'pull') for (const f of existsSync('/var/tmp') ? execFileSync('ls', ['-A', '/var/tmp'], { encoding: 'utf8' }).split('\n') : []) if (f && !varTmpBefore.has(f)) staged.push(f);
      },
    });
    assert.equal(outcome.error, undefined, outcome.error && `${outcome.error.code}: ${outcome.error.message} ${JSON.stringify(outcome.error.details).slice(0, 2000)}`);
    t.diagnostic(`disk-mode install took ${Math.round(outcome.ms)} ms; ${JSON.stringify(outcome.result?.container_storage)}`);
    await assertClean(outcome);
    const r = outcome.result!;
    const cs = r.container_storage as { mode: string; chosen_by: string; reason: string; scratch_bytes: number; scratch_offset: number; installed_root_mib: number; root_grown_to_mib: number; root_filesystem: string };
    assert.equal(cs.mode, 'disk');
    assert.equal(cs.chosen_by, 'auto');
    assert.match(cs.reason, /has 1[56] MiB free but the image needs about/);
    assert.ok(cs.scratch_bytes > (r.admission as { estimated_unpacked_bytes: number }).estimated_unpacked_bytes);
    assert.equal(cs.root_filesystem, 'xfs');
    assert.ok(cs.root_grown_to_mib >= cs.installed_root_mib + cs.scratch_bytes / MiB, `root ${cs.root_grown_to_mib} MiB, installed ${cs.installed_root_mib} MiB`);
    assert.equal(r.root_size_mib, cs.root_grown_to_mib);
    // progress: the choice in admission, the scratch in disk, the growth in install
    assert.ok(outcome.progress.some((p) => p.phase === 'admission' && /container storage: disk \(auto\)/.test(String(p.message))));
    const placed = outcome.progress.find((p) => p.phase === 'disk' && /container storage on /.test(String(p.message)));
    assert.ok(placed, 'no progress report of the scratch');
    assert.equal(placed.scratch_offset, cs.scratch_offset);
    assert.equal(placed.scratch_bytes, cs.scratch_bytes);
    assert.match(String(placed.loop_device), /^\/dev\/loop\d+$/);
    assert.ok(outcome.progress.some((p) => /root grown to \d+ MiB/.test(String(p.message))));
    // every podman call used the scratch's storage; the host storage never saw the image
    const podmanCalls = outcome.commands.filter((c) => c[0] === 'podman' && c.some((a) => a === 'pull' || a === 'run'));
    assert.ok(podmanCalls.length >= 3);
    for (const c of podmanCalls) assert.ok(c.includes('--root') && c[c.indexOf('--root') + 1]!.startsWith('/run/bootc-scratch-'), c.join(' '));
    assert.equal(probe('podman', ['image', 'exists', pushed.reference]).status, 1, 'the image landed in the host storage');
    assert.deepEqual(staged.filter((f) => /^container_images|^storage/.test(f)), [], `podman staged blobs in /var/tmp: ${staged.join(', ')}`);
    await assertScratchGone(dev);
    // the layout: bootc's partitions, root grown to where the scratch ended, the config drive last
    const lines = partitionLines(dev);
    assert.equal(lines.length, 4, lines.join('\n'));
    assert.match(lines[2]!, /8304\s+root$/);
    assert.match(lines[3]!, /6[45]\.\d MiB\s+8300\s+config-2$/);
    const parts = r.partitions as { size_bytes: number; start_bytes: number }[];
    assert.equal(parts[2]!.start_bytes + parts[2]!.size_bytes, cs.scratch_offset + cs.scratch_bytes);
    assert.ok(parts[3]!.start_bytes >= cs.scratch_offset + cs.scratch_bytes);
    assert.ok((r.free_tail_bytes as number) < 4 * MiB, `free tail ${String(r.free_tail_bytes)}`);
    // the filesystem fills the grown partition, and the installed tree is intact
    await withRootMounted(`${dev}p3`, async (root) => {
      const [blocks, blockSize] = sh('stat', ['-f', '-c', '%b %S', root]).trim().split(' ').map(Number) as [number, number];
      const bytes = blocks * blockSize;
      // xfs keeps its log out of the count: 2% of slack, far less than the scratch's share
      assert.ok(bytes > cs.root_grown_to_mib * MiB * 0.98 && bytes > (cs.installed_root_mib * MiB + cs.scratch_bytes * 0.9), `filesystem of ${bytes} bytes in a ${cs.root_grown_to_mib} MiB partition`);
      assert.ok(existsSync(join(root, 'ostree/deploy/default/deploy')));
    });
  });

  test('container storage on the disk: memory mode refuses the same image with INSUFFICIENT_SPACE before the disk is touched', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!.dev);
    const storagePath = await smallTmpfs(16);
    const outcome = await runStep({ instanceInfo: { bootc_container_storage: 'memory' }, deps: { storagePath, memAvailable: async () => 64 * GiB } });
    assert.equal(outcome.error?.code, 'INSUFFICIENT_SPACE', outcome.error?.message);
    assert.equal(outcome.error!.details.phase, 'admission');
    assert.equal(partitionLines(disk!.dev).length, 2, 'the marker table is still there');
    await assertClean(outcome);
  });

  test('container storage on the disk: a failed install leaves no mount, no loop device, no scratch, the disk wiped', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.dev;
    layMarkerTable(dev);
    const outcome = await runStep({ instanceInfo: { bootc_container_storage: 'disk', bootc_kargs: ['standin.fail=rootfs'] } });
    assert.equal(outcome.error?.code, 'BOOTC_INSTALL_FAILED', outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
    assert.equal((outcome.error!.details.cleanup as { disk?: string }).disk, 'wiped');
    await assertScratchGone(dev);
    assertWiped(dev);
    await assertClean(outcome);
    assert.ok(outcome.progress.some((p) => /container storage: disk \(instance_info\)/.test(String(p.message))));
  });

  test('the stand-in, like bootc, takes any mount whose source contains the disk\'s path for a mount of the disk', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.dev;
    layMarkerTable(dev);
    // what a scratch on /dev/loop12 would look like to bootc installing to /dev/loop1
    const mnt = await mkdtemp(join(dir, 'lookalike-'));
    sh('mount', ['-t', 'tmpfs', `${dev}9`, mnt]);
    try {
      const outcome = await runStep({ instanceInfo: { bootc_container_storage: 'memory' } });
      assert.equal(outcome.error?.code, 'BOOTC_INSTALL_FAILED', outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
      assert.match(outcome.error!.message, new RegExp(`Device ${dev} is mounted`));
    } finally {
      probe('umount', [mnt]);
    }
  });

  test('container storage on the disk: an image with systemd-repart definitions is refused (CONTAINER_STORAGE_UNSUPPORTED) before the install, the scratch removed, the disk wiped', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.dev;
    layMarkerTable(dev);
    const overlay = await mkdtemp(join(dir, 'repart-overlay-'));
    await mkdir(join(overlay, 'usr/lib/repart.d'), { recursive: true });
    await writeFile(join(overlay, 'usr/lib/repart.d/50-root.conf'), '[Partition]\nType=root\n');
    const local = await buildStandinVariant({ overlayDir: overlay, name: 'localhost/bootc-standin-repart' });
    const imageId = sh('podman', ['image', 'inspect', '--format', '{{.Id}}', local]).trim();
    cleanups.push(() => probe('podman', ['rmi', '--ignore', '--', imageId]));
    const pushed = await pushStandin(registry!, 'os/repart', 'latest', local);
    const outcome = await runStep({ args: { image_source: `oci://${pushed.reference}` }, instanceInfo: { bootc_container_storage: 'disk' } });
    assert.equal(outcome.error?.code, 'CONTAINER_STORAGE_UNSUPPORTED', outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
    assert.equal(outcome.error!.details.phase, 'probe');
    assert.deepEqual(outcome.error!.details.repart_definitions, ['/usr/lib/repart.d/50-root.conf']);
    assert.ok(!outcome.commands.some((c) => c.includes('install')), 'bootc install ran');
    await assertScratchGone(dev);
    assertWiped(dev);
    await assertClean(outcome);
  });

  test('container storage on the disk: a cancel during the pull tears the scratch down and wipes the disk', async (t) => {
    if (reason) return t.skip(reason);
    const dev = disk!.dev;
    layMarkerTable(dev);
    const outcome = await runStep({
      instanceInfo: { bootc_container_storage: 'disk' },
      onProgress: (p, abort) => { if (p.phase === 'pull') abort.abort(); },
    });
    assert.equal(outcome.error?.code, 'CANCELLED', outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'succeeded');
    await assertScratchGone(dev);
    assertWiped(dev);
    await assertClean(outcome);
  });

  // Issue 15: the agent verifies the signatures policy.json asks for (here a cosign v3 bundle,
  // an OCI 1.1 referrer, which podman cannot find), then has podman pull that digest.
  async function signedStandin(repo: string, signer = makeKey()) {
    const pushed = await pushStandin(registry!, repo, 'latest', 'bootc');
    const creds: Credentials = { type: 'basic', username: registry!.username, password: registry!.password };
    const manifest = (await createOciClient({ policy: null, certsDirs: [...DEFAULT_CERTS_DIRS, registry!.certsDir] }).resolve(`oci://${pushed.reference}`, { credentials: creds })).document;
    const subject = { mediaType: manifest.mediaType, digest: pushed.digest, size: manifest.bytes.length };
    await pushBundleReferrer(registry!, repo, subject, makeBundle(signer, pushed.digest), true);
    return { pushed, signer };
  }
  function signaturePolicy(repo: string, publicPem: string) {
    return { default: [{ type: 'insecureAcceptAnything' }], transports: { docker: { [`${registry!.host}/${repo}`]: [
      { type: 'sigstoreSigned', keyData: Buffer.from(publicPem).toString('base64'), signedIdentity: { type: 'matchRepository' } },
    ] } } };
  }
  // podman run with HOME pointing at a policy.json of its own: what podman's own check would say.
  async function podmanWithPolicy(policy: unknown): Promise<{ runner: CommandRunner; home: string }> {
    const home = await mkdtemp(join(dir, 'home-'));
    await mkdir(join(home, '.config/containers'), { recursive: true });
    await writeFile(join(home, '.config/containers/policy.json'), JSON.stringify(policy));
    return { home, runner: { run: (file, args, opts) => realRunner.run(file, args, file === 'podman' ? { ...opts, env: { ...opts?.env, HOME: home } } : opts) } };
  }

  test('a signed image: the v0.3 bundle policy.json asks for is verified and reported, and podman pulls that digest despite its own check', async (t) => {
    if (reason) return t.skip(reason);
    const { pushed, signer } = await signedStandin('os/signed');
    const policy = signaturePolicy('os/signed', signer.publicPem);
    const { runner } = await podmanWithPolicy(policy);
    // Without the agent's verification podman refuses the image: it finds no signature it knows.
    const authDir = await mkdtemp(join(dir, 'auth-'));
    const authFile = join(authDir, 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { [registry!.host]: { auth: Buffer.from(`${registry!.username}:${registry!.password}`).toString('base64') } } }), { mode: 0o600 });
    const plain = await runner.run('podman', ['pull', '--authfile', authFile, '--', `${pushed.reference.replace(/:latest$/, '')}@${pushed.digest}`], { okExitCodes: [0, 125] });
    await rm(authDir, { recursive: true, force: true });
    assert.equal(plain.exitCode, 125, 'podman accepted the image by itself: the test would prove nothing');
    assert.match(plain.stderr, /signature/i);
    const outcome = await runStep({
      runner,
      args: { image_source: `oci://${pushed.reference}` },
      oci: createOciClient({ policy: parsePolicy(JSON.stringify(policy)), certsDirs: [...DEFAULT_CERTS_DIRS, registry!.certsDir] }),
    });
    assert.equal(outcome.error, undefined, outcome.error && `${outcome.error.code}: ${outcome.error.message}`);
    const [signature] = outcome.result!.signatures as Record<string, unknown>[];
    assert.equal(signature?.format, 'sigstore-bundle');
    assert.equal(signature?.digest, pushed.digest);
    assert.match(String(signature?.found_in), /referrer/);
    assert.equal(outcome.result!.image_digest, pushed.digest);
    assert.ok(outcome.progress.some((p) => p.phase === 'resolve' && /^signature verified: sigstoreSigned/.test(p.message)));
    const pull = outcome.commands.find((c) => c[0] === 'podman' && c.includes('pull'))!;
    assert.ok(pull.includes('--signature-policy'), pull.join(' '));
    assert.ok(pull.at(-1)!.endsWith(`@${pushed.digest}`), pull.join(' '));
    await assertClean(outcome);
  });

  // Each way a signature can fail fails in phase resolve, before the pull, the disk as it was.
  const signatureFailures: [string, string, (repo: string, signer: ReturnType<typeof makeKey>) => Promise<unknown>, string][] = [
    ['no signature at all', 'OCI_SIGNATURE_MISSING', async (repo, signer) => signaturePolicy(repo, signer.publicPem), 'unsigned'],
    ['a signature by another key', 'OCI_SIGNATURE_INVALID', async (repo) => signaturePolicy(repo, makeKey().publicPem), 'signed'],
    ['a signature for another digest', 'OCI_SIGNATURE_DIGEST_MISMATCH', async (repo, signer) => signaturePolicy(repo, signer.publicPem), 'other-digest'],
    ['a signature the identity rule refuses', 'OCI_SIGNATURE_IDENTITY_MISMATCH', async (repo, signer) => {
      const policy = signaturePolicy(repo, signer.publicPem);
      const [req] = policy.transports.docker[`${registry!.host}/${repo}`]!;
      Object.assign(req!, { signedIdentity: { type: 'exactRepository', dockerRepository: `${registry!.host}/os/someone-else` } });
      return policy;
    }, 'signed'],
    ['an unknown requirement type', 'OCI_POLICY_REQUIREMENT_UNKNOWN', async (repo) => ({ default: [{ type: 'signedByQuantumOracle' }], transports: { docker: {} } }), 'signed'],
  ];
  for (const [name, code, policyOf, shape] of signatureFailures) {
    test(`${name}: ${code} in phase resolve, the disk left as it was`, async (t) => {
      if (reason) return t.skip(reason);
      const repo = `os/sigfail-${code.toLowerCase().replaceAll('_', '-')}`;
      const signer = makeKey();
      if (shape === 'unsigned') await pushStandin(registry!, repo, 'latest', 'bootc');
      else if (shape === 'signed') await signedStandin(repo, signer);
      else {
        // The bundle signs the no-bootc image's digest, attached to the stand-in's.
        const other = await pushStandin(registry!, `${repo}-other`, 'latest', 'noBootc');
        const pushed = await pushStandin(registry!, repo, 'latest', 'bootc');
        const creds: Credentials = { type: 'basic', username: registry!.username, password: registry!.password };
        const manifest = (await createOciClient({ policy: null, certsDirs: [...DEFAULT_CERTS_DIRS, registry!.certsDir] }).resolve(`oci://${pushed.reference}`, { credentials: creds })).document;
        await pushBundleReferrer(registry!, repo, { mediaType: manifest.mediaType, digest: pushed.digest, size: manifest.bytes.length }, makeBundle(signer, other.digest), true);
      }
      layMarkerTable(disk!.dev);
      const outcome = await runStep({
        args: { image_source: `oci://${registry!.host}/${repo}:latest` },
        oci: createOciClient({ policy: parsePolicy(JSON.stringify(await policyOf(repo, signer))), certsDirs: [...DEFAULT_CERTS_DIRS, registry!.certsDir] }),
      });
      assert.equal(outcome.error?.code, code, outcome.error && `${outcome.error.code}: ${outcome.error.message}`);
      assert.equal(outcome.error!.details.phase, 'resolve');
      assert.ok(!outcome.commands.some((c) => c[0] === 'podman' && c.includes('pull')), 'a pull was started');
      assert.equal(partitionLines(disk!.dev).length, 2, 'the marker table is still there');
      await assertClean(outcome);
    });
  }

  // The disk is looked up while the image resolves; its outcome counts only in phase `disk`.
  const waitingFor = (attempts: number, delaySeconds: number): Partial<BootcStepDeps> => ({
    config: { disable_bootc_deploy: false, disk_wait_attempts: attempts, disk_wait_delay: delaySeconds, include_loop_devices: true, state_dir: stateDir },
  });
  test('a root device that never appears fails in phase disk with DEVICE_NOT_FOUND, after the image resolved; nothing is pulled', async (t) => {
    if (reason) return t.skip(reason);
    const outcome = await runStep({ device: '/dev/bootc-agent-it-no-such-disk', deps: waitingFor(2, 0) });
    assert.equal(outcome.error?.code, 'DEVICE_NOT_FOUND', outcome.error?.message);
    assert.equal(outcome.error!.details.phase, 'disk');
    assert.deepEqual(phasesOf(outcome), ['resolve', 'admission', 'disk']);
    assert.ok(!outcome.commands.some((c) => c[0] === 'podman' && c.includes('pull')), 'a pull was started');
    await assertClean(outcome);
  });

  test('a registry failure while the disk is still awaited ends the step at once and stops the lookup', async (t) => {
    if (reason) return t.skip(reason);
    const wrong = Buffer.from(Buffer.from(`${STANDIN_REGISTRY_USERNAME}:wrong-password`).toString('base64')).toString('base64');
    const outcome = await runStep({
      args: { oci_pull_secret: wrong },
      device: '/dev/bootc-agent-it-no-such-disk',
      deps: waitingFor(60, 1),
    });
    assert.equal(outcome.error?.code, 'REGISTRY_AUTH_FAILED', outcome.error?.message);
    assert.equal(outcome.error!.details.phase, 'resolve');
    assert.ok(outcome.ms < 15_000, `took ${outcome.ms} ms: the step waited for the disk lookup to run out`);
    const lookups = outcome.commands.filter((c) => c[0] === 'lsblk').length;
    assert.ok(lookups >= 1, 'the disk lookup did not start');
    await sleep(2500);
    assert.equal(outcome.commands.filter((c) => c[0] === 'lsblk').length, lookups, 'lsblk still runs after the step ended');
    await assertClean(outcome);
  });

  test('cancelling during install stops the container, fails with CANCELLED and wipes the disk', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!.dev);
    const outcome = await runStep({
      instanceInfo: { bootc_kargs: ['standin.sleep=60'] },
      onProgress: (p, abort) => {
        if (p.phase === 'install' && p.message === 'partitioning') setTimeout(() => abort.abort(new Error('test cancelled')), 500);
      },
    });
    assert.equal(outcome.error?.code, 'CANCELLED', outcome.error?.message);
    assert.equal(outcome.error!.details.phase, 'install');
    assert.ok(outcome.ms < 60_000, `took ${outcome.ms} ms`);
    assertWiped(disk!.dev);
    await assertClean(outcome);
  });

  test('the operator switch refuses the step before anything happens', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!.dev);
    const outcome = await runStep({ deps: { config: { disable_bootc_deploy: true, disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, state_dir: stateDir } } });
    assert.equal(outcome.error?.code, 'STEP_DISABLED');
    assert.equal(partitionLines(disk!.dev).length, 2);
  });

  test('control: the stand-in does catch a secret left where the tenant can read it', async (t) => {
    if (reason) return t.skip(reason);
    layMarkerTable(disk!.dev);
    const leak = join(stateDir, 'leaked-auth.json');
    await writeFile(leak, JSON.stringify({ auths: { [registry!.host]: { auth: STANDIN_CANARIES[1] } } }));
    try {
      const outcome = await runStep();
      assert.equal(outcome.error?.code, 'BOOTC_INSTALL_FAILED', outcome.error?.message);
      assert.match(String(outcome.error!.details.stderr_tail), /stand-in canary: .*leaked-auth\.json/);
      assert.ok(!String(outcome.error!.details.stderr_tail).includes(STANDIN_CANARIES[1]!));
      assertWiped(disk!.dev);
    } finally {
      await rm(leak, { force: true });
    }
  });
});
