import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootcFeatures, parseBootcVersion } from '../../src/bootc/bootc-version.ts';
import { planLayout } from '../../src/bootc/layout.ts';
import { buildInstallArgs, buildProbeArgs, buildPullArgs, luksDropInToml } from '../../src/bootc/podman-args.ts';
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
