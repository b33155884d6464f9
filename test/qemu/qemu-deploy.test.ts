// The QEMU deploy test (scripts/qemu-deploy-test) as a node:test: the real ramdisk boots under
// QEMU, deploys a bootable stand-in image through the agent API and the deployed disk boots.
// It needs root, qemu-system-x86, ovmf, debootstrap, podman, skopeo, docker-registry and more
// (the script checks and answers exit 77 with `SKIP: <reason>`); it is skipped with the reason
// printed when any of them is missing, and also when BOOTC_AGENT_SKIP_QEMU=1.
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { runQemuScript } from '../helpers/qemu-script.ts';

function quickSkipReason(): string | undefined {
  if (process.env.BOOTC_AGENT_SKIP_QEMU === '1') return 'BOOTC_AGENT_SKIP_QEMU=1';
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs Linux on x86_64';
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)';
  if (!existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd')) return 'OVMF not installed (apt-get install ovmf)';
  return undefined;
}

const reason = quickSkipReason();
if (reason) console.log(`qemu deploy test skipped: ${reason}`);

test('QEMU: ramdisk boots, heartbeats, deploys a bootc image, powers off; the disk boots with the config drive and keys', { skip: reason ?? false, timeout: 40 * 60_000 }, async (t) => {
  await runQemuScript(t, 'scripts/qemu-deploy-test', ['--scenario', 'kill-mid-install']);
});

// Issue 14: an image whose unpacked size exceeds the VM's RAM deploys with its container storage
// on the target disk (auto's choice), root grown over the scratch, the config drive last, and the
// disk boots. The VM has 2 GiB (less does not boot: the ramdisk's files fill the kernel's rootfs,
// a tmpfs of half the RAM), so the image must be larger than that; the guest pulls through QEMU's
// user networking under TCG at 1–3 MB/s, so the run takes about half an hour. It runs when
// BOOTC_AGENT_QEMU_BIG_LAYER=<MiB> asks for it: .ci/run sets 1900 (an image of 2188 MiB).
const BIG_LAYER = process.env.BOOTC_AGENT_QEMU_BIG_LAYER;
const bigReason = reason ?? (BIG_LAYER ? undefined : 'an image larger than the VM\'s 2 GiB takes ~30 min under TCG: BOOTC_AGENT_QEMU_BIG_LAYER=1900 runs it (CI sets it)');
test('QEMU: an image larger than the VM\'s RAM deploys with the container storage on the disk, and the disk boots', { skip: bigReason ?? false, timeout: 120 * 60_000 }, async (t) => {
  await runQemuScript(t, 'scripts/qemu-deploy-test', ['--skip-failures', '--big-layer', BIG_LAYER!, '--memory', '2048']);
});
