/**
 * The QEMU deploy test: the real ramdisk (scripts/build-ramdisk) boots under qemu-system-x86_64
 * (TCG, OVMF), looks itself up at a fake conductor on the host, and the conductor drives a bootc
 * deploy of a bootable stand-in image from a TLS registry on the host through the agent API;
 * then the VM is powered off through the agent, booted again from its disk, and the deployed
 * system must report the config drive's uuid and the injected keys on the serial console.
 *
 * `--scenario kill-mid-install` first starts a deploy whose install holds after partitioning
 * the disk, kills the agent through systemd in the VM (typed on the serial console) and checks
 * that systemd's restart of it reports the step FAILED and leaves the disk wiped; then the normal
 * deploy runs on the same disk.
 *
 * `--big-layer MiB` deploys, last, the bootable stand-in plus a layer of that many MiB of
 * incompressible bytes instead: with `--memory` below the image's unpacked size, the image cannot
 * be kept in the ramdisk's memory, so the container storage must go to the target disk. The
 * command result must say so, root must have been grown over the scratch, the config drive must
 * be the last partition, and the disk must boot. The guest's MemTotal − MemAvailable is sampled
 * over the serial console during the deploy; its peak is in the summary.
 *
 *   node --import tsx scripts/qemu/deploy-test.ts [--build auto|always|never] [--keep]
 *        [--skip-failures] [--scenario deploy|kill-mid-install] [--work DIR] [--memory MiB]
 *        [--big-layer MiB] [--container-storage auto|memory|disk] [--disk-size GiB]
 *
 * Exit status 0 on success, 1 on a failed check, 2 on a usage error, 77 when something this
 * test needs is missing (printed as `SKIP: <reason>`). Serial logs are kept on failure.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { startFakeConductor, type FakeConductor, type StepDecision } from '../../test/helpers/fake-conductor.ts';
import { startGuestRegistry, type GuestRegistry } from './registry.ts';
import { dumpAgentState, GUEST_HOST_IP, ramdiskIsFresh, startVm as startQemu, VM_MAC as MAC, type Vm as QemuVm, type VmOptions } from './vm.ts';
import { freePort } from '../../test/helpers/registry.ts';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

const { values: opts } = parseArgs({
  options: {
    build: { type: 'string', default: 'auto' },
    keep: { type: 'boolean', default: false },
    'skip-failures': { type: 'boolean', default: false },
    scenario: { type: 'string', default: 'deploy' },
    work: { type: 'string' },
    memory: { type: 'string', default: '6144' },
    'big-layer': { type: 'string', default: '0' },
    'container-storage': { type: 'string' },
    'disk-size': { type: 'string' },
    ramdisk: { type: 'string', default: join(ROOT, 'build/ramdisk') },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  console.log('usage: scripts/qemu-deploy-test [--build auto|always|never] [--keep] [--skip-failures] [--scenario deploy|kill-mid-install] [--work DIR] [--memory MiB] [--ramdisk DIR]\n'
    + '                                [--big-layer MiB] [--container-storage auto|memory|disk] [--disk-size GiB]');
  process.exit(0);
}
if (!['deploy', 'kill-mid-install'].includes(opts.scenario!)) {
  console.error('--scenario must be deploy or kill-mid-install');
  process.exit(2);
}
if (!['auto', 'always', 'never'].includes(opts.build!)) {
  console.error('--build must be auto, always or never');
  process.exit(2);
}
const positive = (name: string, v: string | undefined, zero = false) => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || (!zero && Number(v) === 0)) {
    console.error(`--${name} takes a ${zero ? 'non-negative' : 'positive'} whole number, not "${v}"`);
    process.exit(2);
  }
  return Number(v);
};
const BIG_MIB = positive('big-layer', opts['big-layer'], true)!;
const MEMORY_MIB = positive('memory', opts.memory)!;
const DISK_GIB = positive('disk-size', opts['disk-size']);
if (opts['container-storage'] !== undefined && !['auto', 'memory', 'disk'].includes(opts['container-storage'])) {
  console.error('--container-storage must be auto, memory or disk');
  process.exit(2);
}

const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
const log = (msg: string) => console.log(`[qemu-test ${stamp()}] ${msg}`);
const timings: { phase: string; seconds: number; ok: boolean; note?: string }[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
const serialLogs: string[] = [];

class CheckFailed extends Error {}
const fail = (msg: string): never => { throw new CheckFailed(msg); };

async function phase<T>(name: string, fn: () => Promise<T>, note?: (v: T) => string): Promise<T> {
  const start = Date.now();
  log(`── ${name}`);
  try {
    const v = await fn();
    const seconds = (Date.now() - start) / 1000;
    const n = note?.(v);
    timings.push({ phase: name, seconds, ok: true, ...(n ? { note: n } : {}) });
    log(`   ${name}: ok in ${seconds.toFixed(1)} s${n ? ` (${n})` : ''}`);
    return v;
  } catch (err) {
    timings.push({ phase: name, seconds: (Date.now() - start) / 1000, ok: false, note: (err as Error).message });
    throw err;
  }
}

function skipReason(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs Linux on x86_64';
  if (process.getuid?.() !== 0) return 'needs root (debootstrap, podman, registry)';
  const need: [string, string][] = [
    ['/usr/bin/qemu-system-x86_64', 'qemu-system-x86'], [OVMF_CODE, 'ovmf'], [OVMF_VARS, 'ovmf'],
    ['/usr/bin/docker-registry', 'docker-registry'], ['/usr/bin/skopeo', 'skopeo'], ['/usr/bin/podman', 'podman'],
    ['/usr/bin/htpasswd', 'apache2-utils'], ['/usr/bin/openssl', 'openssl'], ['/usr/bin/genisoimage', 'genisoimage'],
    ['/usr/bin/mdir', 'mtools'], ['/usr/sbin/sfdisk', 'fdisk'], ['/usr/sbin/debootstrap', 'debootstrap'], ['/usr/bin/cpio', 'cpio'], ['/bin/busybox', 'busybox-static'],
  ];
  const missing = [...new Set(need.filter(([p]) => !existsSync(p)).map(([, pkg]) => pkg))];
  if (missing.length) return `missing Debian packages: ${missing.join(' ')}`;
  return undefined;
}


/** Runs a command with its output prefixed and passed through; rejects on non-zero exit. */
function runStreaming(cmd: string, args: string[], prefix: string): Promise<void> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    const pipe = (s: NodeJS.ReadableStream) => {
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) console.log(`${prefix} ${l}`);
      });
    };
    pipe(child.stdout!);
    pipe(child.stderr!);
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolveRun() : reject(new CheckFailed(`${cmd} exited ${code}`))));
  });
}

// ---- the VM -----------------------------------------------------------------------------------

interface MemSample { at: number; totalKiB: number; availableKiB: number }

interface Vm extends QemuVm {
  /** `BOOTC-MEM <MemTotal> <MemAvailable>` lines the guest printed (see sampleGuestMemory). */
  mem: MemSample[];
}

// The VM of scripts/qemu/vm.ts, stopped by this test's cleanups, with the guest's memory samples.
function startVm(o: VmOptions): Vm {
  const vm = startQemu({ ...o, log, fail }) as Vm;
  serialLogs.push(vm.logPath);
  cleanups.push(() => vm.stop());
  vm.mem = [];
  let pending = '';
  vm.child.stdout!.on('data', (d: Buffer) => {
    const lines = (pending + d.toString('utf8').replace(/\r/g, '')).split('\n');
    pending = lines.pop()!.slice(-4096);
    for (const l of lines) {
      const m = /BOOTC-MEM (\d+) (\d+)/.exec(l);
      if (m) vm.mem.push({ at: Date.now(), totalKiB: Number(m[1]), availableKiB: Number(m[2]) });
    }
  });
  return vm;
}

/**
 * Has the ramdisk's serial root shell print MemTotal and MemAvailable every 2 s (as
 * `BOOTC-MEM <kB> <kB>`): what the deploy costs the machine, page cache that can be dropped not
 * counted, tmpfs (the ramdisk's files, an in-memory container storage) counted.
 */
async function sampleGuestMemory(vm: Vm): Promise<void> {
  vm.type('');
  vm.type("( while :; do set -- $(grep -E '^(MemTotal|MemAvailable):' /proc/meminfo); echo \"BOOTC-MEM $2 $5\"; sleep 2; done ) &");
  await pollUntil(async () => vm.mem.length > 0, 120_000, 'the guest\'s first memory sample');
}

function memUsedMiB(s: MemSample): number {
  return Math.round((s.totalKiB - s.availableKiB) / 1024);
}

// ---- disk inspection (host side, raw image) ----------------------------------------------------

interface DiskPartition { node: string; start: number; size: number; type: string; name?: string }
interface DiskState { partitions: DiskPartition[]; sectorSize: number; bootable: boolean; detail: string }

async function inspectDisk(disk: string): Promise<DiskState> {
  let table: { partitiontable?: { sectorsize?: number; partitions?: DiskPartition[] } };
  try {
    const { stdout } = await run('sfdisk', ['-J', disk]);
    table = JSON.parse(stdout);
  } catch {
    return { partitions: [], sectorSize: 512, bootable: false, detail: 'no partition table' };
  }
  const partitions = table.partitiontable?.partitions ?? [];
  const sector = table.partitiontable?.sectorsize ?? 512;
  for (const p of partitions) {
    if (p.type.toUpperCase() !== 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B') continue;
    const r = spawnSync('mdir', ['-b', '-i', `${disk}@@${p.start * sector}`, '::/EFI/BOOT'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' }, encoding: 'utf8' });
    if (r.status === 0 && /BOOTX64\.EFI/i.test(r.stdout)) return { partitions, sectorSize: sector, bootable: true, detail: `ESP ${p.node} has EFI/BOOT/BOOTX64.EFI` };
  }
  return { partitions, sectorSize: sector, bootable: false, detail: `${partitions.length} partition(s), no ESP with a boot loader` };
}

// ---- the image larger than the VM's RAM ----------------------------------------------------------

interface BigImage { tag: string; unpackedMiB: number; compressedMiB: number }

/** The big image build-bootable-image made; its unpacked size must exceed the VM's RAM, or the run proves nothing. */
async function bigImage(): Promise<BigImage> {
  const tag = `localhost/bootc-standin-big:${BIG_MIB}m`;
  const { stdout } = await run('podman', ['image', 'inspect', '--format', '{{.Size}}', tag]);
  const unpackedMiB = Math.round(Number(stdout.trim()) / 1048576);
  if (!(unpackedMiB > MEMORY_MIB)) fail(`--memory ${MEMORY_MIB} MiB is not below the big image's unpacked size (${unpackedMiB} MiB): the run would not show an image larger than RAM`);
  // random bytes do not compress: gzip leaves the big layer its size; the stand-in's own layers are ~100 MiB
  return { tag, unpackedMiB, compressedMiB: BIG_MIB + 128 };
}

function findKey(value: unknown, key: string): unknown {
  if (!value || typeof value !== 'object') return undefined;
  if (key in value) return (value as Record<string, unknown>)[key];
  for (const v of Object.values(value)) {
    const found = findKey(v, key);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The deploy of the big image: the result says the storage was on the disk (chosen by auto unless
 * --container-storage said disk), root was grown to where the scratch ended, the config drive is
 * the last partition, and the guest's memory really was smaller than the image.
 */
function checkStorageOnDisk(r: WireResult, d: DiskState, big: BigImage, idle: MemSample): string {
  const cs = findKey(r.command_result, 'container_storage') as Record<string, unknown> | undefined;
  if (!cs) fail(`no container_storage in the result: ${JSON.stringify(r.command_result).slice(0, 500)}`);
  const c = cs as { mode?: string; chosen_by?: string; reason?: string; scratch_offset?: number; scratch_bytes?: number; installed_root_mib?: number; root_grown_to_mib?: number | null };
  if (c.mode !== 'disk') fail(`container storage was ${c.mode}, not disk: ${JSON.stringify(cs)}`);
  const expectedBy = opts['container-storage'] === 'disk' ? 'instance_info' : 'auto';
  if (c.chosen_by !== expectedBy) fail(`container storage chosen by ${c.chosen_by}, expected ${expectedBy}`);
  if (expectedBy === 'auto' && !c.reason) fail('auto chose the disk without a reason');
  if (typeof c.root_grown_to_mib !== 'number' || c.root_grown_to_mib < c.installed_root_mib! + c.scratch_bytes! / 1048576) fail(`root not grown over the scratch: ${JSON.stringify(cs)}`);
  const parts = [...d.partitions].sort((a, b) => a.start - b.start);
  const last = parts.at(-1)!;
  if (last.name !== 'config-2') fail(`the last partition is ${last.name ?? last.type}, not the config drive`);
  const root = parts.find((p) => p.name === 'root') ?? fail(`no root partition: ${JSON.stringify(parts)}`);
  const rootEnd = (root.start + root.size) * d.sectorSize;
  if (rootEnd !== c.scratch_offset! + c.scratch_bytes!) fail(`root ends at ${rootEnd}, the scratch ended at ${c.scratch_offset! + c.scratch_bytes!}`);
  if (idle.totalKiB * 1024 >= big.unpackedMiB * 1048576) fail(`the guest's MemTotal (${Math.round(idle.totalKiB / 1024)} MiB) is not below the image's unpacked size (${big.unpackedMiB} MiB)`);
  return `; storage ${c.mode} (${c.chosen_by}${c.reason ? `: ${c.reason.slice(0, 120)}` : ''}), scratch ${Math.round(c.scratch_bytes! / 1048576)} MiB at ${c.scratch_offset}, root ${c.installed_root_mib} → ${c.root_grown_to_mib} MiB, config drive last; guest MemTotal ${Math.round(idle.totalKiB / 1024)} MiB < image ${big.unpackedMiB} MiB unpacked`;
}

// ---- the conductor side -------------------------------------------------------------------------

interface WireResult { id: string; command_name: string; command_status: string; command_error: { message: string } | null; command_result: Record<string, unknown> | null }

async function agentCommand(conductor: FakeConductor, name: string, params: unknown, wait: boolean): Promise<WireResult> {
  const res = await conductor.callAgent({ method: 'POST', path: '/v1/commands/', query: { wait: String(wait) }, body: { name, params } });
  if (res.status !== 200 && res.status !== 202) fail(`${name}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as WireResult;
}

async function pollCommand(conductor: FakeConductor, id: string, timeoutMs: number, label: string): Promise<WireResult> {
  const deadline = Date.now() + timeoutMs;
  let lastProgress = '';
  for (;;) {
    const res = await conductor.callAgent({ path: '/v1/commands/' });
    if (res.status !== 200) fail(`GET /v1/commands/: HTTP ${res.status}`);
    const cmd = (res.body as { commands: WireResult[] }).commands.find((c) => c.id === id);
    if (!cmd) fail(`command ${id} vanished from the agent's list`);
    const progress = (cmd!.command_result as { progress?: { phase?: string; message?: string } } | null)?.progress;
    const line = progress ? `${progress.phase ?? ''}: ${progress.message ?? ''}` : '';
    if (line && line !== lastProgress) { log(`   ${label} progress ${line}`); lastProgress = line; }
    if (cmd!.command_status !== 'RUNNING') return cmd!;
    if (Date.now() > deadline) fail(`${label}: still RUNNING after ${Math.round(timeoutMs / 1000)} s`);
    await sleep(3000);
  }
}

/**
 * The kill-mid-install scenario: a deploy whose install holds after partitioning the disk
 * (`standin.sleep`, the moment a kill leaves BIOS-BOOT and an unformatted ESP), the agent killed
 * by systemd in the VM as the OOM killer would (`systemctl kill -s KILL`, typed on the serial
 * console), restarted by the unit's `Restart=on-failure`; the conductor, waiting like Ironic ≥ 29,
 * must see the step FAILED (COMMAND_INTERRUPTED) with the install container removed and the
 * disk wiped — on the host the raw disk has no partition left.
 */
async function killMidInstall(conductor: FakeConductor, vm: Vm, disk: string, step: { args: Record<string, unknown>; node: Record<string, unknown>; ports: unknown[] }): Promise<string> {
  const { command, decision } = await conductor.startStep('deploy', 'execute_bootc_install', step);
  await pollUntil(async () => {
    const list = (await conductor.callAgent({ path: '/v1/commands/' })).body as { commands: WireResult[] };
    const last = list.commands.find((c) => c.id === command.id);
    if (last?.command_status !== 'RUNNING') fail(`the deploy ended before the install: ${JSON.stringify(last)}`);
    return (last!.command_result as { progress?: { phase?: string } } | null)?.progress?.phase === 'install';
  }, 30 * 60_000, 'the install phase');
  await pollUntil(async () => (await inspectDisk(disk)).partitions.length >= 2, 10 * 60_000, 'the stand-in partitioning the disk');
  log('   install holding with a partitioned disk: systemctl kill -s KILL bootc-agent');
  vm.type('');
  vm.type('systemctl kill -s KILL bootc-agent');
  const seen: StepDecision = await Promise.race([decision, sleep(20 * 60_000).then(() => fail('no decision within 20 min of the kill'))]);
  const error = seen.command?.command_error as { details?: string } | null | undefined;
  if (seen.outcome !== 'failed') fail(`the conductor decided ${seen.outcome} after the restart: ${JSON.stringify(seen.command)}`);
  if (seen.command?.id !== command.id) fail(`the FAILED command is not the one killed: ${JSON.stringify(seen.command)}`);
  const details = error?.details ?? '';
  if (!details.startsWith('[COMMAND_INTERRUPTED]') || !details.includes('phase=install')) fail(`not reported as interrupted in the install phase: ${details}`);
  if (!/"containers":\["bootc-agent-install-/.test(details)) fail(`the install container was not removed: ${details}`);
  if (!details.includes('"disk":"wiped"')) fail(`the disk was not wiped: ${details}`);
  const d = await inspectDisk(disk);
  if (d.partitions.length > 0) fail(`partitions left on the disk after the restart: ${d.detail}`);
  return `FAILED after the restart: ${details.slice(0, 200)}`;
}

async function pollUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) fail(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
    await sleep(2000);
  }
}

function sshKey(comment: string): { line: string; fingerprint: string } {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const str = (b: Buffer) => { const l = Buffer.alloc(4); l.writeUInt32BE(b.length); return Buffer.concat([l, b]); };
  const blob = Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { line: `ssh-ed25519 ${blob.toString('base64')} ${comment}`, fingerprint };
}

async function buildConfigDrive(work: string, meta: object): Promise<string> {
  const tree = await mkdtemp(join(work, 'configdrive-'));
  await mkdir(join(tree, 'openstack/latest'), { recursive: true });
  await writeFile(join(tree, 'openstack/latest/meta_data.json'), JSON.stringify(meta));
  await writeFile(join(tree, 'openstack/latest/user_data'), '#cloud-config\n');
  await writeFile(join(tree, 'openstack/latest/network_data.json'), '{"links":[],"networks":[],"services":[]}');
  const iso = join(work, 'configdrive.iso');
  await run('genisoimage', ['-quiet', '-o', iso, '-ldots', '-allow-lowercase', '-allow-multidot', '-l', '-J', '-r', '-V', 'config-2', tree]);
  return gzipSync(await readFile(iso)).toString('base64');
}

/** An extra cpio appended to the initramfs: the registry's CA under certs.d (how a site adds CAs). */
async function siteOverlay(work: string, registry: GuestRegistry, base: string): Promise<string> {
  const tree = join(work, 'overlay');
  const caDir = join(tree, 'etc/containers/certs.d', registry.guestAddress);
  await mkdir(caDir, { recursive: true });
  await writeFile(join(caDir, 'ca.crt'), registry.caPem);
  const cpio = join(work, 'overlay.cpio');
  await run('sh', ['-c', `cd "${tree}" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 --reproducible > "${cpio}"`]);
  // The kernel looks for a following archive only at a 4-byte aligned offset and skips NUL
  // bytes between archives: pad the compressed base before appending (else "Initramfs
  // unpacking failed: invalid magic at start of compressed archive" and the overlay is lost).
  const combined = join(work, 'initramfs-with-overlay');
  const baseBytes = await readFile(base);
  const pad = Buffer.alloc((4 - (baseBytes.length % 4)) % 4 + 512);
  await writeFile(combined, Buffer.concat([baseBytes, pad, await readFile(cpio)]));
  return combined;
}

/**
 * The ramdisk the way an operator gets it to Ironic: published to the registry as OCI artifacts
 * (scripts/publish-ramdisk) and fetched back for this machine's platform by the agent's own
 * `bootc-agent fetch --output-dir`, from the bundle the ramdisk carries; the VM boots those files.
 */
async function ramdiskThroughRegistry(work: string, registry: GuestRegistry, ramdiskDir: string): Promise<{ dir: string; kernelUrl: string }> {
  const certs = join(work, 'certs.d');
  await mkdir(join(certs, registry.hostAddress), { recursive: true });
  await copyFile(registry.caPath, join(certs, registry.hostAddress, 'ca.crt'));
  const env = { ...process.env, QEMU_TEST_REGISTRY_CREDS: `${registry.username}:${registry.password}` };
  const access = ['--creds-env', 'QEMU_TEST_REGISTRY_CREDS', '--cert-dir', certs, '--json'];
  const target = `oci://${registry.hostAddress}/ipa/bootc-agent-ramdisk:qemu-test`;
  const published = JSON.parse((await run(join(ROOT, 'scripts/publish-ramdisk'), [target, '--amd64', ramdiskDir, ...access], { env, maxBuffer: 16 << 20 })).stdout) as {
    arches: { amd64?: { deployKernel: string; deployRamdisk: string } };
  };
  const kernelUrl = published.arches.amd64?.deployKernel ?? fail('publish-ramdisk printed no amd64 URLs');
  const bundle = join(ROOT, 'dist/bootc-agent.mjs');
  if (!existsSync(bundle)) await run(process.execPath, [join(ROOT, 'scripts/build.mjs')], { cwd: ROOT });
  const dir = join(work, 'ramdisk-fetched');
  const fetched = JSON.parse((await run(process.execPath, [bundle, 'fetch', target, '--platform', 'linux/amd64', '--output-dir', dir, ...access], { env, maxBuffer: 16 << 20 })).stdout) as {
    files: { path: string; digest: string }[];
  };
  for (const name of ['bootc-agent.kernel', 'bootc-agent.initramfs']) {
    const [built, got] = await Promise.all([sha256File(join(ramdiskDir, name)), sha256File(join(dir, name))]);
    if (built !== got) fail(`${name} fetched back from ${target} differs from the build (${got} ≠ ${built})`);
    if (!fetched.files.some((f) => f.path === join(dir, name) && f.digest === `sha256:${got}`)) fail(`fetch --json does not list ${name} with its digest`);
  }
  return { dir, kernelUrl };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const skip = skipReason();
  if (skip) { console.log(`SKIP: ${skip}`); return 77; }
  const work = opts.work ? resolve(opts.work) : await mkdtemp(join(tmpdir(), 'qemu-deploy-test-'));
  await mkdir(work, { recursive: true });
  log(`work dir ${work}`);
  const ramdiskDir = resolve(opts.ramdisk!);

  await phase('ramdisk', async () => {
    if (opts.build === 'never' || (opts.build === 'auto' && await ramdiskIsFresh(ramdiskDir))) {
      if (!existsSync(join(ramdiskDir, 'bootc-agent.initramfs'))) fail(`--build never but no ramdisk in ${ramdiskDir}`);
      return 'reused';
    }
    await runStreaming(join(ROOT, 'scripts/build-ramdisk'), ['--out', ramdiskDir], '  [build]');
    return 'built';
  }, (v) => `${v}, initramfs ${(statSync(join(ramdiskDir, 'bootc-agent.initramfs')).size / 1048576).toFixed(0)} MiB`);

  await phase('images', () => runStreaming(join(ROOT, 'scripts/qemu/build-bootable-image'), BIG_MIB ? ['--big-layer', String(BIG_MIB)] : [], '  [image]'));
  const big = BIG_MIB ? await bigImage() : undefined;

  const registry = await phase('registry', async () => {
    // Same credentials as scripts/qemu/build-bootable-image bakes into the image as canaries.
    const r = await startGuestRegistry({ guestIp: GUEST_HOST_IP, username: 'qemu-user', password: 'canary-qemu-5d81f0c7a2' });
    cleanups.push(() => r.stop());
    await r.pushFromPodman('localhost/bootc-standin-bootable:latest', 'os/standin-bootable:latest');
    await r.pushFromPodman('localhost/bootc-standin-nobootc:latest', 'os/nobootc:latest');
    if (big) await r.pushFromPodman(big.tag, 'os/standin-big:latest');
    return r;
  }, (r) => `https://${r.hostAddress}, guest sees ${r.guestAddress}`);

  const booted = await phase('ramdisk → registry → bootc-agent fetch', () => ramdiskThroughRegistry(work, registry, ramdiskDir),
    (v) => `published ${v.kernelUrl} and its initramfs, fetched back byte for byte`);

  const conductor = await startFakeConductor({ macs: [MAC], heartbeatTimeout: 60 });
  cleanups.push(() => conductor.close());
  const conductorPort = Number(new URL(conductor.url).port);
  const agentPort = await freePort();
  const disk = join(work, 'disk.raw');
  // The big image needs room for the scratch (sized from the agent's 3× estimate of the unpacked
  // size: registries do not say it) and for the installed root beside it.
  const diskGiB = DISK_GIB ?? (big ? Math.ceil((4.4 * big.compressedMiB + 1024 + big.unpackedMiB + 3072) / 1024) : 10);
  await run('truncate', ['-s', `${diskGiB}G`, disk]);
  log(`   target disk ${diskGiB} GiB (sparse), VM memory ${MEMORY_MIB} MiB${big ? `, big image ${big.unpackedMiB} MiB unpacked, ${big.compressedMiB} MiB compressed` : ''}`);
  const vars = join(work, 'OVMF_VARS.fd');
  await copyFile(OVMF_VARS, vars);
  const initrd = await siteOverlay(work, registry, join(booted.dir, 'bootc-agent.initramfs'));
  const append = [
    'console=ttyS0,115200', 'panic=-1',
    `ipa-api-url=http://${GUEST_HOST_IP}:${conductorPort}`,
    'ipa-advertise-host=127.0.0.1', `ipa-advertise-port=${agentPort}`,
    'ipa-lookup-interval=2', 'bootc-agent-autologin=1', 'systemd.show_status=auto',
  ].join(' ');
  log(`   conductor ${conductor.url} (guest: http://${GUEST_HOST_IP}:${conductorPort}), agent API at https://127.0.0.1:${agentPort}, node ${conductor.nodeUuid}`);

  const vm1 = await phase('boot ramdisk → first heartbeat', async () => {
    const vm = startVm({
      name: 'ramdisk', work, disk, vars, memory: opts.memory!, kernel: join(booted.dir, 'bootc-agent.kernel'), initrd, append,
      hostfwd: agentPort, guestfwds: [conductorPort, registry.port],
    });
    const started = Date.now();
    let lastReport = started;
    for (;;) {
      if (conductor.acceptedHeartbeats.length > 0) break;
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        const last = conductor.requests.at(-1);
        log(`   waiting: ${conductor.lookups.length} lookup(s), ${conductor.heartbeats.length} heartbeat(s)${last ? `, last ${last.method} ${last.path} → ${last.status} ${last.error ?? ''}` : ''}`);
      }
      if (vm.child.exitCode !== null) fail(`the VM exited before heartbeating (serial log ${vm.logPath})`);
      if (Date.now() - started > 15 * 60_000) await dumpAgentState(vm, log, 120_000, 60);
      if (Date.now() - started > 15 * 60_000) fail(`no accepted heartbeat within 15 min (serial log ${vm.logPath}); lookups seen: ${conductor.lookups.length}, heartbeats: ${conductor.heartbeats.map((h) => `${h.status} ${h.error ?? ''}`).join('; ')}`);
      await sleep(500);
    }
    return { vm, lookupAfter: (conductor.lookups[0]!.at - started) / 1000, heartbeatAfter: (conductor.acceptedHeartbeats[0]!.at - started) / 1000 };
  }, (v) => `lookup after ${v.lookupAfter.toFixed(1)} s, heartbeat after ${v.heartbeatAfter.toFixed(1)} s, agent ${conductor.agentVersion}, ${conductor.agentUrl}`);

  const node = (instanceInfo: Record<string, unknown>) => ({
    uuid: conductor.nodeUuid, properties: { cpu_arch: 'x86_64' }, instance_info: instanceInfo, driver_internal_info: {},
  });
  const ports = [{ address: MAC, uuid: randomUUID() }];

  await phase('get_deploy_steps', async () => {
    const r = await agentCommand(conductor, 'deploy.get_deploy_steps', { node: node({}), ports }, true);
    const text = JSON.stringify(r.command_result);
    if (!text.includes('execute_bootc_install')) fail(`execute_bootc_install not among the deploy steps: ${text}`);
    return r;
  });

  const secret = (user: string, pass: string) => Buffer.from(Buffer.from(`${user}:${pass}`).toString('base64')).toString('base64');
  const deploy = async (label: string, args: Record<string, unknown>, instanceInfo: Record<string, unknown>, timeoutMs: number) => {
    const r = await agentCommand(conductor, 'deploy.execute_deploy_step', {
      step: { interface: 'deploy', step: 'execute_bootc_install', priority: 80, args },
      node: node(instanceInfo), ports, deploy_version: null,
    }, false);
    return pollCommand(conductor, r.id, timeoutMs, label);
  };

  if (!opts['skip-failures']) {
    await phase('deploy with a wrong registry password → FAILED', async () => {
      const r = await deploy('wrong-password', { image_source: `oci://${registry.guestAddress}/os/standin-bootable:latest`, oci_pull_secret: secret(registry.username, 'wrong-password') }, {}, 10 * 60_000);
      if (r.command_status !== 'FAILED') fail(`expected FAILED, got ${r.command_status}`);
      // For the right reason: the registry answered and refused the credentials.
      if (!/\b401\b|unauthori[sz]ed|denied/i.test(r.command_error?.message ?? '')) fail(`FAILED, but not for the credentials: ${r.command_error?.message}`);
      const d = await inspectDisk(disk);
      if (d.bootable) fail(`the disk is bootable after a failed deploy: ${d.detail}`);
      return `${r.command_error?.message?.slice(0, 160)}; disk: ${d.detail}`;
    }, (v) => v);
    await phase('deploy of an image without bootc → FAILED', async () => {
      const r = await deploy('no-bootc', { image_source: `oci://${registry.guestAddress}/os/nobootc:latest`, oci_pull_secret: secret(registry.username, registry.password) }, {}, 20 * 60_000);
      if (r.command_status !== 'FAILED') fail(`expected FAILED, got ${r.command_status}`);
      // For the right reason: pulled, then no bootc in the image (not a registry or TLS problem).
      if (!/failed in phase (probe|install)\b/.test(r.command_error?.message ?? '')) fail(`FAILED, but not because bootc is missing: ${r.command_error?.message}`);
      const d = await inspectDisk(disk);
      if (d.bootable) fail(`the disk is bootable after a failed deploy: ${d.detail}`);
      return `${r.command_error?.message?.slice(0, 160)}; disk: ${d.detail}`;
    }, (v) => v);
  }

  if (opts.scenario === 'kill-mid-install') {
    await phase('deploy, agent killed mid-install, restarted by systemd → FAILED, disk wiped', () => killMidInstall(conductor, vm1.vm, disk, {
      args: { image_source: `oci://${registry.guestAddress}/os/standin-bootable:latest`, oci_pull_secret: secret(registry.username, registry.password) },
      node: { properties: { cpu_arch: 'x86_64' }, instance_info: { bootc_kargs: ['standin.sleep=900'] } },
      ports,
    }), (v) => v);
  }

  await sampleGuestMemory(vm1.vm);
  const metaKey = sshKey('config-drive@qemu-test');
  const bootcKey = sshKey('bootc-authorized-keys@qemu-test');
  const meta = { uuid: conductor.nodeUuid, name: 'qemu-node', hostname: 'qemu-node', public_keys: { default: metaKey.line } };
  const storageMode = opts['container-storage'];
  const memoryMustFail = !!big && storageMode === 'memory';
  await phase(`deploy execute_bootc_install${big ? ` of ${big.unpackedMiB} MiB in ${MEMORY_MIB} MiB of RAM` : ''} → ${memoryMustFail ? 'FAILED' : 'SUCCEEDED'}`, async () => {
    const configdrive = await buildConfigDrive(work, meta);
    const idle = vm1.vm.mem.at(-1)!;
    const samplesBefore = vm1.vm.mem.length;
    const r = await deploy('deploy', {
      image_source: `oci://${registry.guestAddress}/os/${big ? 'standin-big' : 'standin-bootable'}:latest`,
      oci_pull_secret: secret(registry.username, registry.password), configdrive,
    }, {
      bootc_authorized_keys: bootcKey.line, bootc_kargs: ['console=ttyS0,115200', 'bootc-qemu-test.poweroff'],
      ...(storageMode ? { bootc_container_storage: storageMode } : {}),
    }, (30 + Math.ceil(BIG_MIB / 1024) * 30) * 60_000);
    const during = vm1.vm.mem.slice(samplesBefore);
    const peak = during.reduce((a, b) => (memUsedMiB(b) > memUsedMiB(a) ? b : a), idle);
    const memNote = `guest memory: MemTotal ${Math.round(idle.totalKiB / 1024)} MiB, used idle ${memUsedMiB(idle)} MiB, peak during the deploy ${memUsedMiB(peak)} MiB (+${memUsedMiB(peak) - memUsedMiB(idle)} MiB, ${during.length} samples)`;
    log(`   ${memNote}`);
    const d = await inspectDisk(disk);
    if (memoryMustFail) {
      if (r.command_status !== 'FAILED' || !/INSUFFICIENT_(SPACE|MEMORY)/.test(JSON.stringify(r.command_error))) fail(`memory storage of an image larger than RAM: expected FAILED with INSUFFICIENT_SPACE or INSUFFICIENT_MEMORY, got ${r.command_status} ${JSON.stringify(r.command_error)}`);
      if (d.partitions.length) fail(`the disk was touched by a deploy refused at admission: ${d.detail}`);
      return `${r.command_error?.message?.slice(0, 200)}; ${memNote}`;
    }
    if (r.command_status !== 'SUCCEEDED') fail(`deploy ${r.command_status}: ${JSON.stringify(r.command_error)}`);
    if (!d.bootable) fail(`deploy SUCCEEDED but the disk is not bootable: ${d.detail}`);
    const storageNote = big ? checkStorageOnDisk(r, d, big, idle) : '';
    return `${d.detail}; partitions ${d.partitions.map((p) => p.name ?? p.type).join(', ')}${storageNote}; ${memNote}`;
  }, (v) => v);
  if (memoryMustFail) {
    if (!opts.keep) await rm(work, { recursive: true, force: true });
    return 0;
  }

  await phase('standby.power_off', async () => {
    await agentCommand(conductor, 'standby.power_off', {}, false);
    const code = await Promise.race([vm1.vm.exited, sleep(5 * 60_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') fail('the VM did not power off within 5 min');
    return code;
  }, (c) => `qemu exited ${c}`);

  await phase('boot the deployed disk → config drive + keys', async () => {
    const vm = startVm({ name: 'disk', work, disk, vars, memory: '2048' });
    const done = await vm.waitFor(/BOOTC-QEMU-CHECK done/, 15 * 60_000, 'the deployed system reporting');
    void done;
    const lines = vm.serial.split('\n').filter((l) => l.includes('BOOTC-QEMU-CHECK')).map((l) => l.slice(l.indexOf('BOOTC-QEMU-CHECK')));
    for (const l of lines) log(`   guest: ${l}`);
    const text = lines.join('\n');
    if (!text.includes(`meta-data uuid=${conductor.nodeUuid}`)) fail(`the deployed system did not report uuid ${conductor.nodeUuid}`);
    if (!text.includes(`meta-data key ${metaKey.fingerprint}`)) fail(`the config drive key ${metaKey.fingerprint} was not reported`);
    if (!text.includes(`authorized-key ${bootcKey.fingerprint}`)) fail(`root's authorized_keys lacks the bootc_authorized_keys key ${bootcKey.fingerprint}`);
    await Promise.race([vm.exited, sleep(120_000)]);
    return lines.length;
  }, (n) => `${n} report lines, uuid and both key fingerprints match`);

  if (!opts.keep) await rm(work, { recursive: true, force: true });
  else log(`kept ${work}`);
  return 0;
}

function printSummary(): void {
  if (!timings.length) return;
  console.log('\n[qemu-test] summary');
  for (const t of timings) console.log(`  ${t.ok ? 'ok  ' : 'FAIL'} ${t.seconds.toFixed(1).padStart(7)} s  ${t.phase}${t.note ? ` — ${t.note}` : ''}`);
  console.log(`  total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

let code = 1;
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    console.error(`[qemu-test] ${sig}: stopping the VM, registry and conductor`);
    void (async () => {
      for (const c of cleanups.reverse()) { try { await c(); } catch { /* best effort */ } }
      printSummary();
      for (const p of serialLogs) console.error(`[qemu-test] serial log kept: ${p}`);
      process.exit(130);
    })();
  });
}
try {
  code = await main();
} catch (err) {
  console.error(`[qemu-test] FAILED: ${err instanceof CheckFailed ? err.message : (err as Error).stack}`);
  for (const p of serialLogs) {
    console.error(`[qemu-test] serial log kept: ${p}`);
    try {
      const tail = (await readFile(p, 'utf8')).split('\n').slice(-40).join('\n');
      console.error(`---- last lines of ${p} ----\n${tail}\n----`);
    } catch { /* missing */ }
  }
  code = 1;
} finally {
  for (const c of cleanups.reverse()) { try { await c(); } catch { /* best effort */ } }
  printSummary();
}
process.exit(code);
