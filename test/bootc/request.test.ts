import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseBootcDeployRequest } from '../../src/bootc/request.ts';
import type { AgentError } from '../../src/errors.ts';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host';
const args = { image_source: 'oci://registry.example:5000/os/image:latest', configdrive: null, oci_pull_secret: null };

describe('parseBootcDeployRequest', () => {
  it('accepts the upstream step exactly as the conductor sends it', () => {
    const r = parseBootcDeployRequest(
      { image_source: 'oci://quay.io/org/os:tag', configdrive: 'H4sIA', oci_pull_secret: 'ZjAw' },
      { instance_info: { bootc_authorized_keys: `${KEY}\n`, bootc_tpm2_luks: true, root_device: { name: '/dev/vda' } } },
    );
    assert.equal(r.imageSource, 'oci://quay.io/org/os:tag');
    assert.equal(r.configdrive, 'H4sIA');
    assert.equal(r.image.registry, 'quay.io');
    assert.equal(r.image.repository, 'org/os');
    // Parsed once, here: base64 of a token (Ironic's wire format for a secret without `user:`).
    assert.equal(r.auth?.shape, 'base64-token');
    assert.deepEqual(r.auth?.credentials, { type: 'registry-token', token: 'f00' });
    assert.deepEqual(r.auth?.secrets, ['ZjAw', 'f00']);
    assert.deepEqual(r.authorizedKeys, [KEY]);
    assert.equal(r.tpm2Luks, true);
  });

  it('reads our additions', () => {
    const r = parseBootcDeployRequest(args, {
      instance_info: { bootc_kargs: ['console=ttyS0', 'quiet'], bootc_target_imgref: 'oci://registry.example/os:stable', bootc_filesystem: 'ext4', bootc_luks: { allow_in_install_config: 'false' } },
    });
    assert.deepEqual(r.kargs, ['console=ttyS0', 'quiet']);
    assert.equal(r.targetImgref, 'registry.example/os:stable');
    assert.equal(r.filesystem, 'ext4');
    assert.equal(r.luksAllowInInstallConfig, false);
    assert.equal(r.containerStorage, undefined);
  });

  it('reads bootc_container_storage (auto, memory, disk; null is the agent option)', () => {
    for (const mode of ['auto', 'memory', 'disk']) assert.equal(parseBootcDeployRequest(args, { instance_info: { bootc_container_storage: mode } }).containerStorage, mode);
    assert.equal(parseBootcDeployRequest(args, { instance_info: { bootc_container_storage: null } }).containerStorage, undefined);
  });

  const booleans: Array<[unknown, boolean]> = [[true, true], [false, false], ['true', true], ['false', false], ['False', false], ['1', true], ['0', false], ['yes', true], ['off', false], [null, false], [undefined, false]];
  for (const [value, expected] of booleans) {
    it(`parses bootc_tpm2_luks=${JSON.stringify(value)} as ${expected}`, () => {
      assert.equal(parseBootcDeployRequest(args, { instance_info: { bootc_tpm2_luks: value } }).tpm2Luks, expected);
    });
  }

  it('takes keys as a list and skips blank and comment lines', () => {
    const r = parseBootcDeployRequest(args, { instance_info: { bootc_authorized_keys: ['', '# ops', KEY, `command="x" ${KEY}`] } });
    assert.equal(r.authorizedKeys.length, 2);
  });

  it('splits a karg string on whitespace', () => {
    assert.deepEqual(parseBootcDeployRequest(args, { instance_info: { bootc_kargs: ' a=1  b ' } }).kargs, ['a=1', 'b']);
  });

  const bad: Array<[string, Record<string, unknown>, Record<string, unknown>, RegExp]> = [
    ['a non-oci image source', { ...args, image_source: 'https://x/y' }, {}, /image_source.*oci:\/\//],
    ['a missing image source', { configdrive: null }, {}, /image_source/],
    ['an unclear boolean', args, { bootc_tpm2_luks: 'maybe' }, /bootc_tpm2_luks.*"maybe"/],
    ['a numeric boolean other than 0/1', args, { bootc_tpm2_luks: 2 }, /bootc_tpm2_luks/],
    ['a key line that is not a key', args, { bootc_authorized_keys: 'hello world' }, /bootc_authorized_keys.*line 1/],
    ['a key of the wrong type', args, { bootc_authorized_keys: 42 }, /bootc_authorized_keys/],
    ['a karg with a space', args, { bootc_kargs: ['a b'] }, /bootc_kargs.*whitespace/],
    ['a non-string karg', args, { bootc_kargs: [1] }, /bootc_kargs/],
    ['an unknown filesystem', args, { bootc_filesystem: 'zfs' }, /bootc_filesystem.*xfs, ext4, btrfs/],
    ['an unknown container storage', args, { bootc_container_storage: 'tmpfs' }, /bootc_container_storage.*auto, memory, disk.*"tmpfs"/],
    ['a container storage of the wrong case', args, { bootc_container_storage: 'Disk' }, /bootc_container_storage/],
    ['a bad target imgref', args, { bootc_target_imgref: 'has space' }, /bootc_target_imgref/],
    ['unknown LUKS options', args, { bootc_luks: { passphrase: 'x' } }, /bootc_luks/],
    // Finding 9 of issue 13: what used to pass and reach the installed OS.
    ['a karg that reads as an option', args, { bootc_kargs: ['--root-size=1'] }, /bootc_kargs.*starts with "-"/],
    ['a karg with a single dash', args, { bootc_kargs: ['-x'] }, /bootc_kargs.*starts with "-"/],
    ['a karg with a shell expansion', args, { bootc_kargs: ['x=$(reboot)'] }, /bootc_kargs.*\$/],
    ['a karg with a backtick', args, { bootc_kargs: ['x=`id`'] }, /bootc_kargs/],
    ['a karg with a control character', args, { bootc_kargs: ['a=\u0007'] }, /bootc_kargs.*control/],
    ['200,000 kargs', args, { bootc_kargs: Array.from({ length: 200_000 }, (_, i) => `k${i}`) }, /bootc_kargs.*2048 bytes/],
    ['kargs longer than a kernel command line', args, { bootc_kargs: Array.from({ length: 30 }, () => 'x'.repeat(100)) }, /bootc_kargs.*bytes do not fit/],
    ['a key list entry with an embedded newline', args, { bootc_authorized_keys: [`${KEY}\nssh-ed25519 AAAAC3Nza attacker`] }, /bootc_authorized_keys.*line break/],
    ['a key line with a carriage return inside', args, { bootc_authorized_keys: `${KEY}\rcommand="x" ${KEY}` }, /bootc_authorized_keys.*control/],
  ];
  for (const [what, a, ii, pattern] of bad) {
    it(`rejects ${what} with DEPLOY_ARGS_INVALID`, () => {
      assert.throws(() => parseBootcDeployRequest(a, { instance_info: ii }), (err: AgentError) => {
        assert.equal(err.code, 'DEPLOY_ARGS_INVALID');
        assert.equal(err.status, 400);
        assert.match(err.message, pattern);
        return true;
      });
    });
  }

  it('refuses root device hints that are not a dict, an empty list included', () => {
    for (const hints of [[], '', false, 0, ['name']]) {
      assert.throws(() => parseBootcDeployRequest(args, { instance_info: { root_device: hints } }), (err: AgentError) => {
        assert.match(err.message, /Root device hints must be a dictionary/, JSON.stringify(hints));
        return true;
      });
    }
    // An empty dict is IPA's "no hints": the node's properties are used instead.
    const r = parseBootcDeployRequest(args, { instance_info: { root_device: {} }, properties: { root_device: { name: '/dev/sdb' } } });
    assert.deepEqual(r.rootDevice.root_device, { name: '/dev/sdb' });
  });

  it('keeps keys with CRLF line ends and tabs', () => {
    const r = parseBootcDeployRequest(args, { instance_info: { bootc_authorized_keys: `${KEY}\r\n${KEY.replace(' user@host', '\tuser@host')}\r\n` } });
    assert.equal(r.authorizedKeys.length, 2);
  });

  it('rejects an unrendered configdrive dict', () => {
    assert.throws(() => parseBootcDeployRequest({ ...args, configdrive: { meta_data: {} } }, {}), /render a configdrive dict/);
  });
});
