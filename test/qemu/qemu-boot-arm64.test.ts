// The arm64 ramdisk boots under qemu-system-aarch64 (virt, GICv3, -cpu max, TCG, AAVMF UEFI
// firmware, user-mode network) to the agent's first heartbeat at the fake conductor:
// scripts/qemu-boot-test --arch arm64, which builds build/ramdisk-arm64/ first when it is missing
// or older than its inputs (stage 1 under qemu-user takes long the first time; see
// docs/benchmarks.md). Skipped with the reason when a tool or root is missing (the script's exit
// 77), when BOOTC_AGENT_SKIP_QEMU=1 or BOOTC_AGENT_SKIP_ARM64=1, and in CI (CI=true) unless
// BOOTC_AGENT_ARM64_IN_CI=1: a first arm64 stage 1 under qemu-user took ~40 min here, which with
// the rest of the suite does not fit CI's 90 minutes (docs/benchmarks.md).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { runQemuScript } from '../helpers/qemu-script.ts';

function quickSkipReason(): string | undefined {
  if (process.env.BOOTC_AGENT_SKIP_QEMU === '1') return 'BOOTC_AGENT_SKIP_QEMU=1';
  if (process.env.BOOTC_AGENT_SKIP_ARM64 === '1') return 'BOOTC_AGENT_SKIP_ARM64=1';
  if (process.env.CI === 'true' && process.env.BOOTC_AGENT_ARM64_IN_CI !== '1') {
    return "CI: building the arm64 ramdisk under qemu-user takes ~40 min, beyond CI's time (BOOTC_AGENT_ARM64_IN_CI=1 runs it)";
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs Linux on x86_64';
  if (process.getuid?.() !== 0) return 'needs root (the ramdisk build)';
  if (!existsSync('/usr/bin/qemu-system-aarch64')) return 'qemu-system-aarch64 not installed (apt-get install qemu-system-arm)';
  if (!existsSync('/usr/share/AAVMF/AAVMF_CODE.fd')) return 'AAVMF not installed (apt-get install qemu-efi-aarch64)';
  if (!existsSync('/usr/bin/qemu-aarch64-static')) return 'qemu-aarch64-static not installed (apt-get install qemu-user-static)';
  return undefined;
}

const reason = quickSkipReason();
if (reason) console.log(`qemu arm64 boot test skipped: ${reason}`);

test('QEMU arm64: the arm64 ramdisk boots under qemu-system-aarch64 (UEFI) and the agent heartbeats', { skip: reason ?? false, timeout: 150 * 60_000 }, async (t) => {
  const text = await runQemuScript(t, 'scripts/qemu-boot-test', ['--arch', 'arm64', '--until', 'heartbeat', '--json'], 60);
  if (text === undefined) return;
  const summary = JSON.parse(text.trimEnd().split('\n').at(-1)!) as { arch: string; ok: boolean; heartbeatSeconds: number; initramfsMiB: number; kernelRelease?: string; agentUrl?: string };
  assert.equal(summary.arch, 'arm64');
  assert.equal(summary.ok, true);
  assert.ok(summary.heartbeatSeconds > 0);
  assert.match(summary.kernelRelease ?? '', /-arm64$/, 'the kernel that booted is Debian\'s arm64 kernel');
  assert.match(summary.agentUrl ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(summary.initramfsMiB <= 130, `initramfs ${summary.initramfsMiB} MiB, target ≤ 130 MiB`);
});
