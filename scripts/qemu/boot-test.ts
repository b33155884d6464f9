/**
 * The QEMU boot test: the real ramdisk of one architecture (scripts/build-ramdisk --arch) boots
 * under software emulation — qemu-system-x86_64 (q35, OVMF) or qemu-system-aarch64 (virt, GICv3,
 * `-cpu max`, AAVMF) — with user-mode networking, looks itself up at a fake conductor on the host
 * (test/helpers/fake-conductor.ts) and must heartbeat to it. It measures the time from QEMU's
 * start to the lookup and to the first accepted heartbeat, and prints the ramdisk's sizes.
 *
 *   node --import tsx scripts/qemu/boot-test.ts [--arch amd64|arm64] [--until heartbeat]
 *        [--build auto|always|never] [--ramdisk DIR] [--work DIR] [--memory MiB] [--timeout S]
 *        [--keep] [--json]
 *
 * Exit status 0 when the first heartbeat arrived, 1 on a failure, 2 on a usage error, 77 when
 * something this test needs is missing (printed as `SKIP: <reason>`). With --json the last line
 * of stdout is the summary as JSON.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startFakeConductor, type FakeConductor } from '../../test/helpers/fake-conductor.ts';
import { freePort } from '../../test/helpers/registry.ts';
import { dumpAgentState, GUEST_HOST_IP, VM_MAC, isVmArch, ramdiskIsFresh, serialConsole, startVm, vmMissingPackages, type VmArch } from './vm.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MiB = 1024 * 1024;
/** The issue's target for the compressed initramfs of each arch. */
const SIZE_TARGET_MIB = 130;

const USAGE = 'usage: scripts/qemu-boot-test [--arch amd64|arm64] [--until heartbeat] [--build auto|always|never] [--ramdisk DIR] [--work DIR] [--memory MiB] [--timeout S] [--keep] [--json]';

interface Options { arch: VmArch; build: 'auto' | 'always' | 'never'; ramdisk: string; work?: string; memory: string; timeoutMs: number; keep: boolean; json: boolean }

/** The command line, or a usage error as a string. */
function parseOptions(argv: string[]): Options | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        arch: { type: 'string', default: 'amd64' }, until: { type: 'string', default: 'heartbeat' },
        build: { type: 'string', default: 'auto' }, ramdisk: { type: 'string' }, work: { type: 'string' },
        memory: { type: 'string' }, timeout: { type: 'string' }, keep: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    return (err as Error).message;
  }
  if (values.help) return '';
  const arch = values.arch!;
  if (!isVmArch(arch)) return '--arch must be amd64 or arm64';
  if (values.until !== 'heartbeat') return '--until must be heartbeat (the deploy itself is scripts/qemu-deploy-test)';
  if (!['auto', 'always', 'never'].includes(values.build!)) return '--build must be auto, always or never';
  const timeout = Number(values.timeout ?? (arch === 'arm64' ? 1800 : 900));
  if (!Number.isFinite(timeout) || timeout <= 0) return '--timeout must be a number of seconds';
  const memory = values.memory ?? '2048';
  if (!/^\d+$/.test(memory)) return '--memory must be MiB';
  return {
    arch, build: values.build as Options['build'], memory, timeoutMs: timeout * 1000, keep: values.keep!, json: values.json!,
    ramdisk: resolve(values.ramdisk ?? join(ROOT, arch === 'amd64' ? 'build/ramdisk' : `build/ramdisk-${arch}`)),
    ...(values.work ? { work: resolve(values.work) } : {}),
  };
}

const t0 = Date.now();
const log = (msg: string) => console.log(`[qemu-boot-test ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
class CheckFailed extends Error {}
const fail = (msg: string): never => { throw new CheckFailed(msg); };

/** Why this test cannot run here (77), or undefined. A build needs root; booting a built ramdisk does not. */
async function skipReason(o: Options): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'needs Linux';
  const missing = vmMissingPackages(o.arch);
  if (missing.length) return `missing Debian packages: ${missing.join(' ')}`;
  if (await needsBuild(o) && process.getuid?.() !== 0) return `no fresh ramdisk in ${o.ramdisk} and building one needs root`;
  if (await needsBuild(o) && o.build === 'never') return `--build never but no ramdisk in ${o.ramdisk}`;
  return undefined;
}

async function needsBuild(o: Options): Promise<boolean> {
  if (o.build === 'always') return true;
  const present = existsSync(join(o.ramdisk, 'bootc-agent.initramfs')) && existsSync(join(o.ramdisk, 'bootc-agent.kernel'));
  if (o.build === 'never') return !present;
  return !(await ramdiskIsFresh(o.ramdisk));
}

function buildRamdisk(o: Options): Promise<void> {
  log(`building the ${o.arch} ramdisk into ${o.ramdisk}`);
  return new Promise((resolveRun, reject) => {
    const child = spawn(join(ROOT, 'scripts/build-ramdisk'), ['--arch', o.arch, '--out', o.ramdisk], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolveRun() : reject(new CheckFailed(`scripts/build-ramdisk --arch ${o.arch} exited ${code}`))));
  });
}

interface Summary {
  arch: VmArch; ok: boolean; kernelMiB: number; initramfsMiB: number; lookupSeconds?: number; heartbeatSeconds?: number;
  agentVersion?: string; agentUrl?: string; kernelRelease?: string; error?: string;
}

/** Boots the VM and waits for the first accepted heartbeat; fills the summary's timings. */
async function bootToHeartbeat(o: Options, work: string, conductor: FakeConductor, summary: Summary, stops: (() => Promise<void>)[]): Promise<void> {
  const agentPort = await freePort();
  const conductorPort = Number(new URL(conductor.url).port);
  const append = [
    `console=${serialConsole(o.arch)},115200`, 'panic=-1',
    `ipa-api-url=http://${GUEST_HOST_IP}:${conductorPort}`, 'ipa-advertise-host=127.0.0.1', `ipa-advertise-port=${agentPort}`,
    'ipa-lookup-interval=2', 'bootc-agent-autologin=1', 'systemd.show_status=auto',
  ].join(' ');
  const disk = join(work, 'disk.raw');
  await writeFile(disk, '');
  await truncate(disk, 2 * 1024 * MiB); // sparse: a disk for the inventory, never written
  const vm = startVm({
    arch: o.arch, name: `ramdisk-${o.arch}`, work, disk, memory: o.memory, log, fail,
    kernel: join(o.ramdisk, 'bootc-agent.kernel'), initrd: join(o.ramdisk, 'bootc-agent.initramfs'), append,
    hostfwd: agentPort, guestfwds: [conductorPort],
  });
  stops.push(() => vm.stop());
  log(`   conductor ${conductor.url} (guest: http://${GUEST_HOST_IP}:${conductorPort}), agent API forwarded to 127.0.0.1:${agentPort}`);
  let lastReport = Date.now();
  while (conductor.acceptedHeartbeats.length === 0) {
    if (vm.child.exitCode !== null || vm.child.signalCode !== null) fail(`the VM exited before heartbeating (serial log ${vm.logPath})`);
    if (Date.now() - vm.startedAt > o.timeoutMs) {
      await dumpAgentState(vm, log, 60_000, 40);
      fail(`no accepted heartbeat within ${o.timeoutMs / 1000} s (serial log ${vm.logPath}); lookups: ${conductor.lookups.length}, heartbeats: ${conductor.heartbeats.map((h) => `${h.status} ${h.error ?? ''}`).join('; ')}`);
    }
    if (Date.now() - lastReport > 30_000) {
      lastReport = Date.now();
      const lastLine = vm.serial.trimEnd().split('\n').at(-1)?.slice(0, 120) ?? '';
      log(`   waiting: ${conductor.lookups.length} lookup(s), ${conductor.heartbeats.length} heartbeat(s); serial: ${lastLine}`);
    }
    await sleep(250);
  }
  summary.lookupSeconds = round((conductor.lookups[0]!.at - vm.startedAt) / 1000);
  summary.heartbeatSeconds = round((conductor.acceptedHeartbeats[0]!.at - vm.startedAt) / 1000);
  summary.agentVersion = conductor.agentVersion;
  summary.agentUrl = conductor.agentUrl;
  summary.kernelRelease = /Linux version (\S+)/.exec(vm.serial)?.[1];
}

const round = (n: number) => Math.round(n * 10) / 10;

async function main(o: Options, summary: Summary, stops: (() => Promise<void>)[]): Promise<number> {
  const skip = await skipReason(o);
  if (skip) { console.log(`SKIP: ${skip}`); return 77; }
  if (await needsBuild(o)) await buildRamdisk(o);
  summary.kernelMiB = round(statSync(join(o.ramdisk, 'bootc-agent.kernel')).size / MiB);
  summary.initramfsMiB = round(statSync(join(o.ramdisk, 'bootc-agent.initramfs')).size / MiB);
  log(`${o.arch} ramdisk ${o.ramdisk}: kernel ${summary.kernelMiB} MiB, initramfs ${summary.initramfsMiB} MiB (target ≤ ${SIZE_TARGET_MIB} MiB)`);
  const work = o.work ?? await mkdtemp(join(tmpdir(), `qemu-boot-test-${o.arch}-`));
  await mkdir(work, { recursive: true });
  const conductor = await startFakeConductor({ macs: [VM_MAC], heartbeatTimeout: 60 });
  stops.push(() => conductor.close());
  try {
    await bootToHeartbeat(o, work, conductor, summary, stops);
  } catch (err) {
    const serial = join(work, `serial-ramdisk-${o.arch}.log`);
    try {
      console.error(`---- last lines of ${serial} (kept) ----\n${(await readFile(serial, 'utf8')).split('\n').slice(-40).join('\n')}\n----`);
    } catch { /* no log */ }
    throw err;
  }
  summary.ok = true;
  log(`first heartbeat after ${summary.heartbeatSeconds} s (lookup after ${summary.lookupSeconds} s), agent ${summary.agentVersion}, kernel ${summary.kernelRelease ?? '?'}`);
  if (summary.initramfsMiB > SIZE_TARGET_MIB) log(`WARNING: the initramfs is over the ${SIZE_TARGET_MIB} MiB target`);
  if (!o.keep && !o.work) await rm(work, { recursive: true, force: true });
  else log(`kept ${work}`);
  return 0;
}

const parsed = parseOptions(process.argv.slice(2));
if (typeof parsed === 'string') {
  if (parsed) console.error(`qemu-boot-test: ${parsed}`);
  (parsed ? console.error : console.log)(USAGE);
  process.exit(parsed ? 2 : 0);
}
const opts = parsed;
const summary: Summary = { arch: opts.arch, ok: false, kernelMiB: 0, initramfsMiB: 0 };
const stops: (() => Promise<void>)[] = [];
const stopAll = async () => {
  for (const s of stops.splice(0).reverse()) { try { await s(); } catch { /* best effort */ } }
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`[qemu-boot-test] ${sig}: stopping the VM and the conductor`);
    void stopAll().then(() => process.exit(130));
  });
}
let code = 1;
try {
  code = await main(opts, summary, stops);
} catch (err) {
  summary.error = err instanceof CheckFailed ? err.message : String((err as Error).stack ?? err);
  console.error(`[qemu-boot-test] FAILED: ${summary.error}`);
} finally {
  await stopAll();
}
if (code !== 77) {
  console.log(`[qemu-boot-test] ${opts.arch}: ${summary.ok ? 'ok' : 'FAILED'}, total ${round((Date.now() - t0) / 1000)} s`);
  if (opts.json) console.log(JSON.stringify(summary));
}
process.exit(code);
