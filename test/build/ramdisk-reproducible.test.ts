/**
 * The ramdisk is reproducible: scripts/build-ramdisk run twice from the same inputs (the cached
 * stage 1 Debian root, the agent bundle, rootfs/, SOURCE_DATE_EPOCH) gives byte-identical kernel
 * and initramfs files, even with another umask and time zone the second time. The initramfs
 * itself is then read: names in byte order, every time SOURCE_DATE_EPOCH, an empty machine-id,
 * no random seed, D-Bus id or SSH host key made at build time.
 *
 * Stage 1 (debootstrap, minutes; under qemu-user for arm64, much longer) is not run here: an arch
 * whose stage 1 is not cached is skipped with the reason (`build-ramdisk --cached-only` exits 3).
 * Needs root (chroot), debootstrap, cpio, zstd; arm64 also qemu-user-static.
 * BOOTC_AGENT_SKIP_RAMDISK_BUILD=1 leaves it out.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { readNewc } from './cpio.ts';
import { toolMissing } from '../helpers/tools.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const SCRIPT = join(ROOT, 'scripts/build-ramdisk');
const EPOCH = 1_760_000_000;

function skipReason(arch: string): string | undefined {
  if (process.env.BOOTC_AGENT_SKIP_RAMDISK_BUILD === '1') return 'BOOTC_AGENT_SKIP_RAMDISK_BUILD=1';
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs Linux on x86_64';
  if (process.getuid?.() !== 0) return 'needs root (chroot into the ramdisk root)';
  return toolMissing('debootstrap', 'cpio', 'zstd', 'chroot', 'flock', ...(arch === 'arm64' ? ['qemu-aarch64-static'] : []));
}

/** Runs build-ramdisk with the umask and environment given; resolves to its exit code and output. */
function build(arch: string, out: string, bundle: string, umask: string, tz: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun) => {
    const child = spawn('sh', ['-c', 'umask "$1"; shift; exec "$@"', 'sh', umask, SCRIPT, '--arch', arch, '--cached-only', '--out', out], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH), AGENT_BUNDLE: bundle, TZ: tz },
    });
    let output = '';
    for (const s of [child.stdout, child.stderr]) s.on('data', (d: Buffer) => { output += d.toString(); });
    child.on('exit', (code) => resolveRun({ code, output }));
  });
}

describe('scripts/build-ramdisk is reproducible', () => {
  let dir: string;
  let bundle: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ramdisk-repro-'));
    bundle = join(dir, 'bootc-agent.mjs');
    await execa(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--outfile', bundle], { cwd: ROOT });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const arch of ['amd64', 'arm64']) {
    const reason = skipReason(arch);
    it(`--arch ${arch} twice: the same kernel and initramfs bytes; the initramfs holds no build-time ids or times`, { skip: reason ?? false, timeout: 40 * 60_000 }, async (t) => {
      const a = join(dir, `${arch}-a`);
      const b = join(dir, `${arch}-b`);
      const first = await build(arch, a, bundle, '022', 'UTC');
      if (first.code === 3) {
        t.skip(`no cached stage 1 for ${arch}: run scripts/build-ramdisk --arch ${arch} once`);
        return;
      }
      assert.equal(first.code, 0, first.output.split('\n').slice(-30).join('\n'));
      const second = await build(arch, b, bundle, '077', 'Pacific/Chatham');
      assert.equal(second.code, 0, second.output.split('\n').slice(-30).join('\n'));

      const sums = await readFile(join(a, 'SHA256SUMS'), 'utf8');
      assert.match(sums, /^[0-9a-f]{64} {2}bootc-agent\.kernel\n[0-9a-f]{64} {2}bootc-agent\.initramfs\n$/);
      assert.equal(await readFile(join(b, 'SHA256SUMS'), 'utf8'), sums);
      for (const f of ['bootc-agent.kernel', 'bootc-agent.initramfs']) {
        assert.ok((await readFile(join(a, f))).equals(await readFile(join(b, f))), `${f} differs`);
      }
      assert.match(await readFile(join(a, 'manifest.txt'), 'utf8'), new RegExp(`^arch: ${arch}$[^]*^source-date-epoch: ${EPOCH}$`, 'm'));

      const zstd = spawn('zstd', ['-dc', join(a, 'bootc-agent.initramfs')], { stdio: ['ignore', 'pipe', 'inherit'] });
      const entries = await readNewc(zstd.stdout, (name) => name === 'etc/hostname' || name === 'usr/lib/bootc-agent/VERSION');
      const names = entries.map((e) => e.name);
      assert.ok(names.length > 5_000, `${names.length} entries`);
      // cpio writes each group of hard links together, where its last member sorts; every other
      // entry is in byte order.
      const single = entries.filter((e) => e.nlink === 1 || (e.mode & 0o170000) !== 0o100000).map((e) => e.name);
      assert.ok(single.length > names.length - 20);
      assert.deepEqual(single.filter((n, i) => i > 0 && Buffer.compare(Buffer.from(single[i - 1]!), Buffer.from(n)) >= 0), [], 'names out of byte order');
      assert.deepEqual(entries.filter((e) => e.mtime !== EPOCH).map((e) => e.name).slice(0, 10), [], 'entries whose time is not SOURCE_DATE_EPOCH');
      const byName = new Map(entries.map((e) => [e.name, e]));
      assert.equal(byName.get('etc/machine-id')?.size, 0, 'machine-id is empty (systemd makes one per boot)');
      assert.equal(byName.get('etc/hostname')?.data?.toString(), 'bootc-agent\n');
      assert.equal(byName.get('etc/hostname')!.mode & 0o777, 0o644, 'hostname is 0644 whatever the build host has');
      assert.match(byName.get('usr/lib/bootc-agent/VERSION')?.data?.toString() ?? '', /^\d+\.\d+\.\d+/);
      assert.equal(byName.get('usr/lib/bootc-agent/VERSION')!.mode & 0o777, 0o644, 'a file the build wrote is 0644 under umask 077');
      const random = names.filter((n) => /^var\/lib\/dbus\/machine-id$|^var\/lib\/systemd\/random-seed$|^etc\/ssh\/ssh_host_|^var\/lib\/systemd\/credential\.secret$/.test(n));
      assert.deepEqual(random, [], 'ids or secrets made at build time');
      assert.ok(byName.has('usr/bin/node') && byName.has('usr/lib/bootc-agent/bootc-agent.mjs') && byName.has('init'));
    });
  }
});
