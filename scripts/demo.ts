/**
 * `npm run demo`: a full bootc deploy on this machine, end to end, in about a minute.
 *
 * 1. a local TLS registry with a user (test/helpers/registry.ts);
 * 2. the stand-in bootc image built and pushed to it (test/helpers/standin-image.ts);
 * 3. a sparse file on a loop device as the target disk;
 * 4. the agent (createAgent: lookup, HTTPS API, heartbeats) looking up a small built-in
 *    conductor (the fake Ironic API plus scripts/demo/deploy-driver.ts);
 * 5. the conductor runs `deploy.execute_deploy_step` → `execute_bootc_install` with an
 *    `oci://` image source, a gzip+base64 config drive and `bootc_authorized_keys`, printing
 *    the phases and bytes as the agent reports them;
 * 6. the resulting partition table and config-drive contents are shown;
 * 7. everything is removed again — loop device, registry, images, temp files — also on
 *    Ctrl-C or failure.
 *
 * Needs root and the packages of `npm run setup`. Exit status 0 on success, 1 on failure,
 * 2 when a prerequisite is missing, 130 when interrupted.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import { createAgent } from '../src/agent.ts';
import { loadConfig } from '../src/config/index.ts';
import { createExecaRunner } from '../src/exec/index.ts';
import { createLogger } from '../src/log/index.ts';
import type { PowerController } from '../src/system/index.ts';
import { AGENT_VERSION } from '../src/version.ts';
import { startFakeConductor } from '../test/helpers/fake-conductor.ts';
import { buildStandinVariant, pushStandin, standinUnavailable, startStandinRegistry, STANDIN_PULL_SECRET } from '../test/helpers/standin-image.ts';
import { buildConfigDrive, readConfigDrive } from './demo/configdrive.ts';
import { DeployFailed, driveBootcDeploy, type DeployEvent } from './demo/deploy-driver.ts';
import { createLoopDisk, describeDisk, mountReadOnly } from './demo/loop-disk.ts';
import { newAuthorizedKey } from './demo/ssh-key.ts';
import { removeImagesFrom } from './demo/images.ts';

const HELP = `Usage: npm run demo [-- OPTIONS]

  --disk-size=GiB   size of the sparse loop disk (default 5)
  --verbose         also print the agent's log (JSON lines) to stderr
  --help

Runs a complete bootc deploy through the agent API on a loop device and cleans up after itself.
Needs root and what \`npm run setup\` installs. The first run builds the stand-in bootc image
(debootstrap, about 1.5 minutes, needs the Debian mirror); it stays cached in podman's storage as
localhost/bootc-standin*:<hash> for later runs and tests (\`podman rmi\` it to free the space).`;

const MAC = '52:54:00:de:e0:01';
const REQUIRED_TOOLS = ['podman', 'losetup', 'partx', 'sfdisk', 'sgdisk', 'blkid', 'wipefs', 'genisoimage', 'isoinfo', 'mcopy', 'tar'];

const t0 = Date.now();
const say = (text: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${text}\n`);
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

// Cleanups run in reverse order; each is attempted even if another fails, and none may hang
// (a pending timer also keeps the event loop alive while a cleanup awaits a dead child).
const cleanups: Array<{ what: string; run: () => Promise<unknown> }> = [];
const onCleanup = (what: string, run: () => Promise<unknown>) => { cleanups.push({ what, run }); };
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}
async function cleanUp(): Promise<boolean> {
  let ok = true;
  while (cleanups.length) {
    const { what, run } = cleanups.pop()!;
    try {
      await withTimeout(run(), 60_000);
    } catch (err) {
      ok = false;
      process.stderr.write(`demo: cleanup "${what}" failed: ${(err as Error).message}\n`);
    }
  }
  return ok;
}

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v "$1"`, 'sh', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function prerequisitesMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'the demo needs root (loop devices, podman); run it as root after `npm run setup`';
  const tools = REQUIRED_TOOLS.filter((t) => !hasCommand(t));
  if (tools.length) return `missing: ${tools.join(', ')} — run \`npm run setup\` first`;
  return standinUnavailable();
}

function describeProgress(p: Record<string, any>): string {
  const bytes = typeof p.bytes_total === 'number' && p.bytes_total > 0
    ? ` — ${mib(Number(p.bytes_done ?? 0))} of ${mib(p.bytes_total)} (${Math.floor((Number(p.bytes_done ?? 0) * 100) / p.bytes_total)}%)`
    : '';
  return `${String(p.phase).padEnd(11)} ${p.message}${bytes}`;
}

async function main(signal: AbortSignal): Promise<number> {
  const { values } = parseArgs({
    options: { 'disk-size': { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const diskGiB = Number(values['disk-size'] ?? 5);
  if (!Number.isFinite(diskGiB) || diskGiB < 4) throw new Error('--disk-size must be a number of GiB ≥ 4');
  const missing = prerequisitesMissing();
  if (missing) {
    process.stderr.write(`demo: ${missing}\n`);
    return 2;
  }

  const runner = createExecaRunner();
  const work = await mkdtemp(join('/var/tmp', 'bootc-agent-demo-'));
  onCleanup(`remove ${work}`, () => rm(work, { recursive: true, force: true }));
  say(`work directory ${work}`);

  // 1. Registry with TLS and a user; its CA goes where podman and the agent look (certs.d).
  const registry = await startStandinRegistry({ auth: 'basic' });
  // stop() waits for the registry's exit; after a terminal Ctrl-C it may already be gone.
  onCleanup('stop the registry', () => withTimeout(registry.stop(), 10_000).catch(() => rm(registry.cert.dir, { recursive: true, force: true })));
  const removeCa = await registry.installCaForPodman();
  onCleanup('remove the registry CA from /etc/containers/certs.d', removeCa);
  say(`registry https://${registry.host} (user ${registry.username}, TLS with a throwaway CA)`);
  signal.throwIfAborted();

  // 2. The stand-in bootc image.
  say('building the stand-in bootc image (cached after the first run, which takes about 1.5 minutes)…');
  // Without the canary scan: it greps the host's /tmp and /var/tmp, which is slow on a busy
  // machine and trips over tsx's compile cache of the helper that holds the canaries.
  const local = await buildStandinVariant({ noCanaries: true, log: (m) => say(`  ${m}`) });
  signal.throwIfAborted();
  const pushed = await pushStandin(registry, 'demo/standin', 'latest', local);
  // The agent pulls into the host's podman storage: drop those names again afterwards.
  onCleanup(`remove ${registry.host}/* images from podman storage`, () => removeImagesFrom(runner, registry.host));
  const imageSource = `oci://${pushed.reference}`;
  say(`pushed ${local} as ${imageSource} (${pushed.digest})`);
  signal.throwIfAborted();

  // 3. The target disk.
  const disk = await createLoopDisk(runner, work, diskGiB * 1024 ** 3);
  onCleanup(`detach ${disk.device}`, () => disk.detach());
  say(`target disk ${disk.device}: ${diskGiB} GiB sparse file ${disk.file}`);

  // 4. Conductor and agent.
  const conductor = await startFakeConductor({ macs: [MAC], heartbeatTimeout: 10 });
  onCleanup('stop the conductor', () => conductor.close());
  const stateDir = join(work, 'agent-state');
  const logStream = new PassThrough();
  if (values.verbose) logStream.pipe(process.stderr);
  else logStream.resume();
  const log = createLogger({ level: 'info', file: join(stateDir, 'agent.log'), stream: logStream });
  const power: PowerController = {
    sync: async () => { await runner.run('sync', []); },
    powerOff: async () => { say('agent: power off requested (demo: the machine stays on)'); },
    reboot: async () => { say('agent: reboot requested (demo: the machine stays on)'); },
  };
  const config = loadConfig({
    overrides: {
      api_url: conductor.url, listen_host: '127.0.0.1', listen_port: 0, advertise_host: '127.0.0.1',
      state_dir: stateDir, include_loop_devices: true, disk_wait_attempts: 3, disk_wait_delay: 1, lookup_interval: 0.2,
    },
  });
  const agent = createAgent({ config, log, runner, power, version: AGENT_VERSION, lookupMacs: async () => [MAC], replyGraceMs: 200 });
  onCleanup('stop the agent', () => agent.stop());
  await agent.start();
  say(`agent ${AGENT_VERSION} looked up node ${conductor.nodeUuid} and listens on ${agent.callbackUrl} (self-signed, state in ${stateDir})`);

  // 5. The deploy.
  const configdrive = await buildConfigDrive(runner, work, {
    meta_data: { uuid: conductor.nodeUuid, name: 'demo-node', hostname: 'demo-node', public_keys: {} },
    user_data: '#cloud-config\nhostname: demo-node\n',
  });
  const key = newAuthorizedKey('demo@bootc-agent');
  say(`config drive: ${mib(configdrive.isoBytes)} ISO (${configdrive.base64.length} base64 chars); authorized key ${key.slice(0, 40)}…`);
  let lastPhase = '';
  let lastHeartbeat: string | undefined;
  const onEvent = (e: DeployEvent) => {
    if (e.kind === 'steps') say(`conductor: agent offers deploy steps ${e.steps.join(', ')}`);
    if (e.kind === 'started') say(`conductor: deploy.execute_deploy_step(execute_bootc_install) started, command ${e.id}`);
    if (e.kind === 'heartbeat' && e.message && e.message !== lastHeartbeat) say(`heartbeat agent_status_message: ${e.message}`);
    if (e.kind === 'heartbeat') lastHeartbeat = e.message;
    if (e.kind === 'progress') {
      const line = describeProgress(e.progress);
      if (e.progress.phase !== lastPhase || e.progress.phase === 'pull' || e.progress.phase === 'install') say(`  ${line}`);
      lastPhase = String(e.progress.phase);
    }
  };
  const result = await driveBootcDeploy({
    conductor,
    signal,
    onEvent,
    request: {
      imageSource,
      configdrive: configdrive.base64,
      // What Ironic sends: base64 of the docker `auth` value of the registry user.
      ociPullSecret: STANDIN_PULL_SECRET,
      instanceInfo: { root_device: { name: disk.device }, bootc_authorized_keys: key },
    },
  });
  const deployResult = result.command.command_result.deploy_result as Record<string, any>;
  say(`SUCCEEDED in ${result.seconds.toFixed(1)} s: ${deployResult.result}`);
  say(`  digest ${deployResult.image_digest}, bootc ${deployResult.bootc_version}, root ${deployResult.root_size_mib} MiB`);

  // 6. What is on the disk now.
  const table = await describeDisk(runner, disk.device);
  process.stdout.write(`\nPartition table of ${disk.device} (${table.label}):\n`);
  process.stdout.write(`  ${'node'.padEnd(16)} ${'start'.padStart(9)} ${'size'.padStart(11)}  ${'name'.padEnd(11)} ${'fs'.padEnd(8)} label\n`);
  for (const p of table.partitions) {
    process.stdout.write(`  ${p.node.padEnd(16)} ${String(p.start).padStart(9)} ${mib(p.sizeBytes).padStart(11)}  ${p.name.padEnd(11)} ${p.fstype.padEnd(8)} ${p.fslabel}\n`);
  }
  const drive = deployResult.configdrive as { partition: { path: string }; format: string } | null;
  if (!drive) throw new Error('the deploy result names no config drive');
  const contents = await readConfigDrive(runner, drive.partition.path, drive.format);
  process.stdout.write(`\nConfig drive on ${drive.partition.path} (${drive.format}):\n`);
  for (const f of contents.files) process.stdout.write(`  ${f}\n`);
  process.stdout.write(`  meta_data.json: ${JSON.stringify(contents.metaData)}\n\n`);
  if (contents.metaData.uuid !== conductor.nodeUuid) throw new Error('meta_data.json on the disk is not the one sent');

  // The root filesystem: what bootc recorded as the update source, and the injected SSH key.
  const rootPart = table.partitions.find((p) => p.fslabel === 'root' && ['xfs', 'ext4', 'btrfs'].includes(p.fstype));
  if (rootPart) {
    const mount = await mountReadOnly(runner, rootPart.node, work);
    onCleanup(`unmount ${mount.path}`, () => mount.unmount());
    const deployDir = join(mount.path, 'ostree', 'deploy', 'default', 'deploy');
    const entries = await readdir(deployDir).catch(() => [] as string[]);
    const origin = entries.find((e) => e.endsWith('.origin'));
    const deployment = entries.find((e) => !e.endsWith('.origin'));
    process.stdout.write(`Root filesystem ${rootPart.node} (${rootPart.fstype}, mounted read-only):
`);
    if (origin) process.stdout.write(`  ${origin}: ${(await readFile(join(deployDir, origin), 'utf8')).trim().split('\n').pop()}
`);
    if (deployment) {
      const ssh = await readFile(join(deployDir, deployment, 'etc', 'tmpfiles.d', 'bootc-root-ssh.conf'), 'utf8').catch(() => undefined);
      // bootc writes the keys as a tmpfiles.d `f~` line: the content is base64.
      const line = ssh?.split('\n').find((l) => l.startsWith('f~'));
      const keys = line ? Buffer.from(line.trim().split(/\s+/).pop()!, 'base64').toString('utf8') : '';
      const shown = keys.includes(key) ? `${line!.split(/\s+/)[1]} ← the key from instance_info.bootc_authorized_keys` : 'MISSING the authorized key';
      process.stdout.write(`  ${deployment}/etc/tmpfiles.d/bootc-root-ssh.conf: ${shown}
`);
    }
    process.stdout.write('\n');
    await mount.unmount();
  }

  // 7. The conductor's tear_down_agent: power off through the agent.
  const off = await conductor.callAgent({ path: '/v1/commands/', query: { wait: 'false' }, body: { name: 'standby.power_off', params: {} } });
  say(`conductor: standby.power_off → ${(off.body as Record<string, unknown>).command_status}`);
  await new Promise((r) => setTimeout(r, 500));
  say(`${conductor.acceptedHeartbeats.length} heartbeats accepted, ${result.progress.length} progress reports seen`);
  return 0;
}

const interrupted = new AbortController();
let interrupts = 0;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write(`\ndemo: ${sig}: stopping and cleaning up (again to force-quit without cleanup)\n`);
      interrupted.abort(new Error(`interrupted by ${sig}`));
    } else {
      process.exit(130);
    }
  });
}

let code: number;
try {
  code = await main(interrupted.signal);
} catch (err) {
  if (interrupted.signal.aborted) {
    code = 130;
  } else {
    code = 1;
    const message = err instanceof DeployFailed ? `${err.message}\n${JSON.stringify(err.command.command_error, null, 2)}` : (err as Error).stack ?? String(err);
    process.stderr.write(`demo: FAILED: ${message}\n`);
  }
}
say('cleaning up');
if (!(await cleanUp())) code = code || 1;
say(code === 0 ? 'demo finished: everything removed' : `demo ended with status ${code}`);
process.exit(code);
