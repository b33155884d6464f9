import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootcFeatures, parseBootcVersion } from '../../src/bootc/bootc-version.ts';
import { planLayout, SCRATCH_GAP_MiB } from '../../src/bootc/layout.ts';
import { buildInstallArgs, buildProbeArgs, buildPullArgs, luksDropInToml, storeArgs } from '../../src/bootc/podman-args.ts';
import type { AgentError } from '../../src/errors.ts';

const GiB = 1024 ** 3;

describe('planLayout', () => {
  it('reserves BIOS + ESP + config drive + slack on x86_64', () => {
    const plan = planLayout({ diskBytes: 20 * GiB, arch: 'x86_64', tpm2Luks: false });
    assert.equal(plan.reserveMiB, 1 + 1 + 512 + 64 + 2);
    assert.equal(plan.rootMiB, 20480 - 580);
  });
  it('adds the 510 MiB /boot for tpm2-luks, so the config drive still fits (IPA\'s 768 MiB does not)', () => {
    const plan = planLayout({ diskBytes: 20 * GiB, arch: 'x86_64', tpm2Luks: true });
    assert.equal(plan.reserveMiB, 580 + 510);
    assert.ok(20480 - 768 > plan.rootMiB, 'IPA\'s root would overlap where the config drive must go');
  });
  it('uses a 1 GiB ESP for composefs and no BIOS partition on aarch64', () => {
    assert.equal(planLayout({ diskBytes: 20 * GiB, arch: 'aarch64', tpm2Luks: false, composefs: true }).reserveMiB, 1 + 1024 + 64 + 2);
  });
  it('refuses a disk too small with the numbers', () => {
    assert.throws(() => planLayout({ diskBytes: 1.2 * GiB, arch: 'x86_64', tpm2Luks: false }), (err: AgentError) => {
      assert.equal(err.code, 'DISK_TOO_SMALL');
      assert.match(err.message, /1228 MiB.*580 MiB.*1024 MiB/);
      return true;
    });
  });
});

describe('planLayout with a scratch area (container storage on the disk)', () => {
  const MiB = 2 ** 20;
  it('takes the scratch and a gap from root and puts the scratch right below the config drive reserve', () => {
    const plain = planLayout({ diskBytes: 20 * GiB + 12345, arch: 'x86_64', tpm2Luks: false });
    const plan = planLayout({ diskBytes: 20 * GiB + 12345, arch: 'x86_64', tpm2Luks: false, scratchBytes: 3000 * MiB + 1 });
    assert.equal(plan.rootMiB, plain.rootMiB - 3001 - SCRATCH_GAP_MiB);
    assert.deepEqual(plan.scratch, { offsetBytes: (20 * 1024 - 66 - 3001) * MiB, sizeBytes: 3001 * MiB });
    // bootc's root (after the 1 MiB GPT head, BIOS and ESP) ends a gap before the scratch
    const rootEndMiB = 1 + 1 + 512 + plan.rootMiB;
    assert.equal(plan.scratch!.offsetBytes / MiB - rootEndMiB, SCRATCH_GAP_MiB);
    // and the scratch ends where the config drive's 64 MiB + 2 MiB slack begin
    assert.equal(20 * 1024 - (plan.scratch!.offsetBytes + plan.scratch!.sizeBytes) / MiB, 66);
    assert.equal(plain.scratch, undefined);
  });
  it('keeps the tpm2-luks /boot before root', () => {
    const plan = planLayout({ diskBytes: 20 * GiB, arch: 'x86_64', tpm2Luks: true, scratchBytes: 2 * GiB });
    assert.equal(plan.scratch!.offsetBytes / MiB - (1 + 1 + 512 + 510 + plan.rootMiB), SCRATCH_GAP_MiB);
  });
  it('refuses a disk that cannot hold root and the scratch, naming both', () => {
    assert.throws(() => planLayout({ diskBytes: 4 * GiB, arch: 'x86_64', tpm2Luks: false, scratchBytes: 3 * GiB }), (err: AgentError) => {
      assert.equal(err.code, 'DISK_TOO_SMALL');
      assert.match(err.message, /Disk of 4096 MiB is too small: the layout needs 580 MiB and a container-storage scratch area of 3072 MiB \(\+16 MiB gap\) besides a root partition of at least 1024 MiB/);
      assert.equal(err.details.scratch_mib, 3072);
      return true;
    });
  });
});

describe('bootc versions', () => {
  const cases: Array<[string, string]> = [['bootc 1.15.1', '1.15.1'], ['bootc 0.1.9\n', '0.1.9'], ['bootc v1.1.0 (abc)', '1.1.0']];
  for (const [out, text] of cases) it(`parses ${JSON.stringify(out)}`, () => assert.equal(parseBootcVersion(out).text, text));
  it('rejects output without a version', () => assert.throws(() => parseBootcVersion('command not found'), /BOOTC|version/));
  it('chooses flags by version', () => {
    assert.deepEqual(bootcFeatures(parseBootcVersion('bootc 1.1.6'), { authorizedKeys: true }), { skipFetchCheck: true, disableSelinuxWhenHostHasNone: false, needsRunUdev: false });
    assert.deepEqual(bootcFeatures(parseBootcVersion('bootc 1.15.1'), { authorizedKeys: true }), { skipFetchCheck: false, disableSelinuxWhenHostHasNone: false, needsRunUdev: true });
    assert.equal(bootcFeatures(parseBootcVersion('bootc 0.1.8'), { authorizedKeys: false }).disableSelinuxWhenHostHasNone, true);
    assert.throws(() => bootcFeatures(parseBootcVersion('bootc 0.1.4'), { authorizedKeys: false }), (e: AgentError) => e.code === 'BOOTC_UNSUPPORTED');
    assert.throws(() => bootcFeatures(parseBootcVersion('bootc 0.1.6'), { authorizedKeys: true }), (e: AgentError) => e.code === 'BOOTC_UNSUPPORTED' && /authorized-keys/.test(e.message));
  });
});

describe('podman argv', () => {
  it('pulls by digest with an auth file', () => {
    assert.deepEqual(buildPullArgs('r:5000/os@sha256:ab', '/run/x/auth.json'), ['pull', '--authfile', '/run/x/auth.json', '--', 'r:5000/os@sha256:ab']);
    assert.deepEqual(buildPullArgs('r/os@sha256:ab', undefined), ['pull', '--', 'r/os@sha256:ab']);
    assert.deepEqual(buildPullArgs('r/os@sha256:ab', undefined, '/run/x/policy.json'), ['pull', '--signature-policy', '/run/x/policy.json', '--', 'r/os@sha256:ab']);
  });
  it('probes without privileges or network', () => {
    const argv = buildProbeArgs('r/os@sha256:ab', 'probe-1');
    assert.ok(!argv.includes('--privileged'));
    assert.ok(argv.includes('--net=none'));
    assert.ok(argv.includes('--pull=never'));
    // Named and without --rm: the step removes it by name while the install runs.
    assert.deepEqual(argv.slice(0, 3), ['run', '--name', 'probe-1']);
    assert.ok(!argv.includes('--rm'));
  });
  it('builds the install command (golden)', () => {
    const argv = buildInstallArgs({
      imageRef: 'r:5000/os@sha256:ab', containerName: 'bootc-install-1', device: '/dev/vda', rootMiB: 19900, filesystem: 'xfs',
      kargs: ['console=ttyS0'], tpm2Luks: true, injectDir: '/run/bootc-agent/inject-1', authorizedKeysFile: '/run/bootc-agent-inject/authorized_keys',
      luksDropIn: '/run/bootc-agent/inject-1/luks.toml', targetImgref: 'r:5000/os:latest', selinuxEnabled: false, hostHasRunUdev: true,
      features: { skipFetchCheck: false, disableSelinuxWhenHostHasNone: false, needsRunUdev: true },
    });
    assert.deepEqual(argv, [
      'run', '--rm', '--name', 'bootc-install-1', '--privileged', '--pid=host', '--ipc=host', '--net=none', '--pull=never',
      '-v', '/dev:/dev', '-v', '/var/lib/containers:/var/lib/containers', '-v', '/var/tmp:/var/tmp', '-v', '/run/udev:/run/udev',
      '-v', '/run/bootc-agent/inject-1:/run/bootc-agent-inject:ro',
      '-v', '/run/bootc-agent/inject-1/luks.toml:/etc/bootc/install/90-bootc-agent-luks.toml:ro',
      'r:5000/os@sha256:ab',
      'bootc', 'install', 'to-disk', '--wipe', '--root-size=19900M', '--filesystem=xfs', '--block-setup=tpm2-luks',
      '--root-ssh-authorized-keys=/run/bootc-agent-inject/authorized_keys', '--karg=console=ttyS0', '--target-imgref=r:5000/os:latest', '/dev/vda',
    ]);
  });
  it('puts every call on a store outside the host storage (golden)', () => {
    const store = { containersDir: '/run/a/scratch-1/containers', tmpDir: '/run/a/scratch-1/tmp', runDir: '/run/bootc-scratch-1' };
    assert.deepEqual(storeArgs(store), ['--root', '/run/a/scratch-1/containers/storage', '--runroot', '/run/bootc-scratch-1/storage', '--tmpdir', '/run/bootc-scratch-1/libpod']);
    assert.deepEqual(storeArgs(undefined), []);
    const argv = buildInstallArgs({
      imageRef: 'i', containerName: 'c', device: '/dev/sda', rootMiB: 1000, filesystem: undefined, kargs: [], tpm2Luks: false, injectDir: undefined,
      authorizedKeysFile: undefined, luksDropIn: undefined, targetImgref: 'i:t', selinuxEnabled: false, hostHasRunUdev: false,
      features: { skipFetchCheck: false, disableSelinuxWhenHostHasNone: false, needsRunUdev: false }, store,
    });
    assert.deepEqual(argv.slice(0, 16), [
      '--root', '/run/a/scratch-1/containers/storage', '--runroot', '/run/bootc-scratch-1/storage', '--tmpdir', '/run/bootc-scratch-1/libpod',
      'run', '--rm', '--name', 'c', '--privileged', '--pid=host', '--ipc=host', '--net=none', '--pull=never', '-v',
    ]);
    assert.deepEqual(argv.slice(16, 21), ['/dev:/dev', '-v', '/run/a/scratch-1/containers:/var/lib/containers', '-v', '/run/a/scratch-1/tmp:/var/tmp']);
  });
  it('adds SELinux and old-bootc flags when needed', () => {
    const argv = buildInstallArgs({
      imageRef: 'i', containerName: 'c', device: '/dev/sda', rootMiB: 1000, filesystem: undefined, kargs: [], tpm2Luks: false, injectDir: undefined,
      authorizedKeysFile: undefined, luksDropIn: undefined, targetImgref: 'i:t', selinuxEnabled: true, hostHasRunUdev: false,
      features: { skipFetchCheck: true, disableSelinuxWhenHostHasNone: true, needsRunUdev: false },
    });
    assert.ok(argv.includes('--skip-fetch-check'));
    assert.deepEqual(argv.slice(argv.indexOf('--security-opt'), argv.indexOf('--security-opt') + 2), ['--security-opt', 'label=type:unconfined_t']);
    assert.ok(!argv.includes('--disable-selinux'), 'SELinux is on in the ramdisk');
  });
  it('writes a drop-in that allows tpm2-luks', () => assert.match(luksDropInToml(), /block = \["direct", "tpm2-luks"\]/));
});
