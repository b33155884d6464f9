/**
 * The QEMU virtual machine the QEMU tests boot, for either architecture: x86_64 (`q35`, OVMF) or
 * aarch64 (`virt`, AAVMF, GICv3), both under TCG with `-cpu max`, UEFI firmware from Debian's
 * packages, a virtio disk, virtio-net on user-mode networking (`restrict=on`: the guest reaches
 * only the ports forwarded to the host) and the serial console on stdio, logged to a file.
 *
 *   const vm = startVm({ arch: 'arm64', name: 'ramdisk', work, disk, memory: '2048', kernel, initrd, append });
 *   await vm.waitFor(/login:/, 60_000, 'a login prompt');
 *   await vm.stop();
 *
 * Also what a test asks before it boots one: which Debian packages are missing for an arch
 * (`vmMissingPackages`), the serial console's name (`serialConsole`), and whether a ramdisk in
 * a directory is older than its inputs (`ramdiskIsFresh`).
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants as fsConstants, copyFileSync, createReadStream, createWriteStream, existsSync, openSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export type VmArch = 'amd64' | 'arm64';
export const VM_ARCHES: readonly VmArch[] = ['amd64', 'arm64'];

/** What booting each arch takes: the QEMU binary, the machine, the UEFI firmware and where they come from. */
interface ArchProfile {
  qemu: string;
  qemuPackage: string;
  machine: string;
  firmwareCode: string;
  firmwareVars: string;
  firmwarePackage: string;
  console: string;
}

const PROFILES: Record<VmArch, ArchProfile> = {
  amd64: {
    qemu: '/usr/bin/qemu-system-x86_64', qemuPackage: 'qemu-system-x86', machine: 'q35',
    firmwareCode: '/usr/share/OVMF/OVMF_CODE_4M.fd', firmwareVars: '/usr/share/OVMF/OVMF_VARS_4M.fd', firmwarePackage: 'ovmf',
    console: 'ttyS0',
  },
  arm64: {
    // gic-version=3: what arm64 servers have (GICv2 tops out at 8 CPUs and has no ITS for MSIs).
    qemu: '/usr/bin/qemu-system-aarch64', qemuPackage: 'qemu-system-arm', machine: 'virt,gic-version=3',
    firmwareCode: '/usr/share/AAVMF/AAVMF_CODE.fd', firmwareVars: '/usr/share/AAVMF/AAVMF_VARS.fd', firmwarePackage: 'qemu-efi-aarch64',
    console: 'ttyAMA0',
  },
};

/** The default MAC address of the VM's NIC (the fake conductor looks the node up by it). */
export const VM_MAC = '52:54:00:12:34:56';
/** The address at which the guest reaches the host's forwarded ports (`guestfwds`). */
export const GUEST_HOST_IP = '10.0.2.100';

export function isVmArch(value: string): value is VmArch {
  return (VM_ARCHES as readonly string[]).includes(value);
}

/** The kernel's name for the serial console QEMU connects to stdio (`console=<name>,115200`). */
export function serialConsole(arch: VmArch): string {
  return PROFILES[arch].console;
}

/** The Debian packages missing on this host to boot a VM of `arch` (empty when it can). */
export function vmMissingPackages(arch: VmArch): string[] {
  const p = PROFILES[arch];
  const need: [string, string][] = [[p.qemu, p.qemuPackage], [p.firmwareCode, p.firmwarePackage], [p.firmwareVars, p.firmwarePackage]];
  return [...new Set(need.filter(([path]) => !existsSync(path)).map(([, pkg]) => pkg))];
}

export interface VmOptions {
  /** Default amd64. */
  arch?: VmArch;
  /** Names the serial log (`serial-NAME.log` in `work`) and the QEMU process. */
  name: string;
  work: string;
  /** A raw disk image attached as a virtio disk (serial `bootc-target`), first in the boot order. */
  disk?: string;
  /** The UEFI variable store; default a fresh copy of the firmware's template in `work`. */
  vars?: string;
  /** MiB, as QEMU's `-m` takes it. */
  memory: string;
  smp?: number;
  /** Direct kernel boot through the firmware (`-kernel/-initrd/-append`). */
  kernel?: string;
  initrd?: string;
  append?: string;
  /** Forwards 127.0.0.1:hostfwd on the host to the guest's port `guestPort` (default 9999, the agent API). */
  hostfwd?: number;
  guestPort?: number;
  /** Host ports the guest reaches at GUEST_HOST_IP:port (one relay process per connection). */
  guestfwds?: number[];
  mac?: string;
  /** Progress lines (the QEMU pid, the console FIFO); default none. */
  log?: (message: string) => void;
  /** How a failed waitFor reports (default: throws a VmError). */
  fail?: (message: string) => never;
}

export class VmError extends Error {}

export interface Vm {
  readonly arch: VmArch;
  readonly child: ChildProcess;
  /** Everything the guest wrote to its serial console so far (`\r` dropped; the last ~2 MB when long). */
  readonly serial: string;
  readonly logPath: string;
  /** QEMU's exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** When QEMU started (Date.now()), for boot timings. */
  readonly startedAt: number;
  waitFor(re: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray>;
  /** Types a line into the serial console (the ramdisk autologins root there with bootc-agent-autologin=1). */
  type(line: string): void;
  /** SIGTERM, then SIGKILL after 5 s; resolves once QEMU is gone. Safe to call twice. */
  stop(): Promise<void>;
}

/** QEMU's argv for the options (without the binary). */
export function vmArgs(o: VmOptions): string[] {
  const arch = o.arch ?? 'amd64';
  const p = PROFILES[arch];
  const net = ['user,id=n0,restrict=on'];
  if (o.hostfwd) net.push(`hostfwd=tcp:127.0.0.1:${o.hostfwd}-:${o.guestPort ?? 9999}`);
  // cmd: runs the relay once per guest connection; a tcp: target would serve only the first one.
  for (const port of o.guestfwds ?? []) {
    net.push(`guestfwd=tcp:${GUEST_HOST_IP}:${port}-cmd:${process.execPath} ${join(ROOT, 'scripts/qemu/relay.mjs')} ${port}`);
  }
  const args = [
    '-name', `bootc-agent-${o.name}`, '-machine', p.machine, '-accel', process.env.QEMU_ACCEL ?? 'tcg', '-cpu', 'max',
    '-smp', String(o.smp ?? 2), '-m', o.memory, '-nodefaults', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${p.firmwareCode}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${o.vars!}`,
  ];
  if (o.disk) {
    args.push('-drive', `if=none,id=d0,format=raw,cache=unsafe,file=${o.disk}`, '-device', 'virtio-blk-pci,drive=d0,bootindex=1,serial=bootc-target');
  }
  args.push('-netdev', net.join(','), '-device', `virtio-net-pci,netdev=n0,mac=${o.mac ?? VM_MAC},romfile=`, '-device', 'virtio-rng-pci');
  if (o.kernel) args.push('-kernel', o.kernel, '-initrd', o.initrd!, '-append', o.append ?? '');
  return args;
}

/** Boots a VM; its serial output goes to `work/serial-NAME.log` and to `vm.serial`. */
export function startVm(options: VmOptions): Vm {
  const arch = options.arch ?? 'amd64';
  const o: VmOptions = { ...options, arch, vars: options.vars ?? freshVars(arch, options.work, options.name) };
  const fail = o.fail ?? ((message: string): never => { throw new VmError(message); });
  const logPath = join(o.work, `serial-${o.name}.log`);
  const out = createWriteStream(logPath);
  const child = spawn(PROFILES[arch].qemu, vmArgs(o), { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin!.on('error', () => undefined);
  const startedAt = Date.now();
  let serial = '';
  let gone = false;
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => { gone = true; out.end(); r(code); }));
  child.on('error', (err) => { out.write(`[vm] ${err.message}\n`); });
  child.stdout!.on('data', (d: Buffer) => {
    out.write(d);
    serial += d.toString('utf8').replace(/\r/g, '');
    if (serial.length > 4_000_000) serial = serial.slice(-2_000_000);
  });
  child.stderr!.on('data', (d: Buffer) => { out.write(d); process.stderr.write(`[qemu] ${d}`); });
  if (process.env.QEMU_TEST_CONSOLE === '1') feedConsoleFifo(o, child);
  o.log?.(`   qemu-system (${arch}) pid ${child.pid}: serial → ${logPath}`);
  return {
    arch, child, logPath, exited, startedAt,
    get serial() { return serial; },
    async waitFor(re, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = serial.match(re);
        if (m) return m;
        if (gone) fail(`${what}: the VM exited first (serial log ${logPath})`);
        if (Date.now() > deadline) fail(`${what}: not seen within ${Math.round(timeoutMs / 1000)} s (serial log ${logPath})`);
        await sleep(250);
      }
    },
    type(line) {
      if (child.exitCode === null && child.stdin!.writable) child.stdin!.write(`${line}\n`);
    },
    async stop() {
      if (gone || child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (!gone) { child.kill('SIGKILL'); await exited; }
    },
  };
}

/**
 * Asks the ramdisk's serial root shell (bootc-agent-autologin=1) for the agent's state, for a
 * boot that did not heartbeat; the answer lands in the serial log. Waits up to `timeoutMs`.
 */
export async function dumpAgentState(vm: Vm, log: (message: string) => void, timeoutMs: number, journalLines: number): Promise<void> {
  log('   asking the guest for its state over the serial console …');
  vm.type('');
  vm.type("echo '=== DEBUG ==='; systemctl --no-pager status bootc-agent systemd-networkd-wait-online | cat; networkctl --no-pager | cat; ip -br addr; "
    + `systemctl --no-pager list-jobs | cat; journalctl -b --no-pager -u bootc-agent | tail -n ${journalLines}; echo '=== END ==='`);
  await Promise.race([vm.waitFor(/=== END ===\s*\n[^]*=== END ===/, timeoutMs, 'debug dump').catch(() => undefined), vm.exited]);
}

/** A writable copy of the firmware's variable store for one VM (AAVMF's is 64 MiB, mostly zeros). */
function freshVars(arch: VmArch, work: string, name: string): string {
  const vars = join(work, `${name}-UEFI_VARS.fd`);
  copyFileSync(PROFILES[arch].firmwareVars, vars);
  return vars;
}

/** QEMU_TEST_CONSOLE=1: a FIFO next to the serial log feeds the serial console, for debugging by hand. */
function feedConsoleFifo(o: VmOptions, child: ChildProcess): void {
  const fifo = join(o.work, `console-${o.name}.fifo`);
  spawnSync('mkfifo', [fifo]);
  const fd = openSync(fifo, fsConstants.O_RDWR);
  createReadStream('', { fd }).on('data', (d) => child.stdin!.write(d));
  o.log?.(`   console input: ${fifo} (echo 'journalctl -u bootc-agent' > ${fifo})`);
}

/**
 * Whether the ramdisk in `dir` (bootc-agent.kernel + bootc-agent.initramfs) is newer than every
 * input of scripts/build-ramdisk: the script, the bundle, rootfs/ and src/.
 */
export async function ramdiskIsFresh(dir: string): Promise<boolean> {
  const initrd = join(dir, 'bootc-agent.initramfs');
  if (!existsSync(initrd) || !existsSync(join(dir, 'bootc-agent.kernel'))) return false;
  const built = statSync(initrd).mtimeMs;
  const inputs = [join(ROOT, 'scripts/build-ramdisk'), join(ROOT, 'dist/bootc-agent.mjs')];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name)); else inputs.push(join(d, e.name));
    }
  };
  await walk(join(ROOT, 'rootfs'));
  await walk(join(ROOT, 'src'));
  for (const f of inputs) if (existsSync(f) && (await stat(f)).mtimeMs > built) return false;
  return true;
}
