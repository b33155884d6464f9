/**
 * The `write_image` deploy step and the direct interface's `standby` commands, driven through
 * the real command executor the way a conductor drives them: image_info parsing, a whole-disk
 * image streamed to a real loop device chosen by root device hints, the conductor's
 * Authorization header, partition UUIDs, and FAILED results for what is not supported.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CommandExecutor, createStepCommands, StepRegistry, type Progress, type WireCommandResult } from '../../src/commands/index.ts';
import { AgentError } from '../../src/errors.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createStandbyImageCommands, createWriteImageStep, parseWriteImageRequest, type WriteImageDeps } from '../../src/image/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createOciClient } from '../../src/oci/index.ts';
import { buildIso } from '../configdrive/fixtures.ts';
import { attachLoop, loopUnavailable, makeGptImage, readHead, startHttpsServer, tempDir, toolMissing, type HttpsServer, type LoopDevice } from './helpers.ts';

const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function rejectsWith(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof AgentError && e.code === code);
}

describe('image_info parsing', () => {
  const urls = ['https://conductor/image'];
  const sha = 'a'.repeat(64);
  test('whole-disk raw/qcow2 with os_hash_* or a legacy checksum', () => {
    const r = parseWriteImageRequest({ id: 'img', urls, os_hash_algo: 'sha512', os_hash_value: 'B'.repeat(128), disk_format: 'qcow2', image_download_source: 'local' }, null, false);
    assert.deepEqual(r.checksum, { algorithm: 'sha512', value: 'b'.repeat(128) });
    assert.equal(r.diskFormat, 'qcow2');
    assert.equal(r.downloadSource, 'local');
    assert.equal(r.streamRequested, true);
    assert.deepEqual(parseWriteImageRequest({ urls, checksum: sha }, undefined, false).checksum, { algorithm: 'sha256', value: sha });
    assert.equal(parseWriteImageRequest({ urls, checksum: sha, disk_format: 'unknown', stream_raw_images: false }, 'H4sI', false).configdrive, 'H4sI');
    assert.equal(parseWriteImageRequest({ urls, checksum: sha, configdrive: 'legacy' }, undefined, false).configdrive, 'legacy');
  });
  test('image_request_authorization is base64 of the header value', () => {
    const r = parseWriteImageRequest({ urls, checksum: sha, image_request_authorization: Buffer.from('Bearer me0w').toString('base64') }, null, false);
    assert.equal(r.authorization, 'Bearer me0w');
    rejectsWith(() => parseWriteImageRequest({ urls, checksum: sha, image_request_authorization: 'not base64!' }, null, false), 'DEPLOY_ARGS_INVALID');
  });
  test('MD5 only when allowed', () => {
    rejectsWith(() => parseWriteImageRequest({ urls, checksum: 'c'.repeat(32) }, null, false), 'IMAGE_CHECKSUM_UNSUPPORTED');
    rejectsWith(() => parseWriteImageRequest({ urls, os_hash_algo: 'md5', os_hash_value: 'c'.repeat(32) }, null, false), 'IMAGE_CHECKSUM_UNSUPPORTED');
    assert.equal(parseWriteImageRequest({ urls, checksum: 'c'.repeat(32) }, null, true).checksum?.algorithm, 'md5');
  });
  test('malformed and unsupported image_info', () => {
    rejectsWith(() => parseWriteImageRequest({ id: 'x' }, null, false), 'DEPLOY_ARGS_INVALID');
    rejectsWith(() => parseWriteImageRequest({ urls: [] }, null, false), 'DEPLOY_ARGS_INVALID');
    rejectsWith(() => parseWriteImageRequest('nope', null, false), 'DEPLOY_ARGS_INVALID');
    rejectsWith(() => parseWriteImageRequest({ urls, checksum: sha, image_type: 'partition' }, null, false), 'IMAGE_FORMAT_UNSUPPORTED');
    rejectsWith(() => parseWriteImageRequest({ urls, checksum: sha, disk_format: 'vmdk' }, null, false), 'IMAGE_FORMAT_UNSUPPORTED');
    rejectsWith(() => parseWriteImageRequest({ urls, checksum: sha, image_download_source: 'swift' }, null, false), 'IMAGE_FORMAT_UNSUPPORTED');
    rejectsWith(() => parseWriteImageRequest({ urls, os_hash_algo: 'sha256', os_hash_value: 'xyz' }, null, false), 'DEPLOY_ARGS_INVALID');
    rejectsWith(() => parseWriteImageRequest({ urls, os_hash_algo: 'whirlpool9', os_hash_value: 'ab' }, null, false), 'IMAGE_CHECKSUM_UNSUPPORTED');
    rejectsWith(() => parseWriteImageRequest({ urls, checksum: 'https://conductor/CHECKSUMS' }, null, false), 'IMAGE_CHECKSUM_UNSUPPORTED');
    rejectsWith(() => parseWriteImageRequest({ urls }, null, false), 'IMAGE_CHECKSUM_UNSUPPORTED');
    assert.equal(parseWriteImageRequest({ urls: ['oci://registry.local/disks/os:1'] }, null, false).checksum, undefined);
  });
});

describe('write_image step and standby commands through the executor', { skip: toolMissing('openssl', 'sgdisk', 'genisoimage') }, () => {
  const reason = loopUnavailable();
  const runner = createExecaRunner();
  const oci = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [] });
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let server: HttpsServer;
  let loop: LoopDevice | undefined;
  let image: Buffer;
  let recorded: Record<string, string> | undefined;
  // What the fake writer was handed: the drive the step loaded before touching the disk.
  const configdrives: { device: string; size: number; label: string | null }[] = [];
  let configDriveValue = '';
  let configDriveSize = 0;
  let failConfigDriveWrite = false;
  let executor: CommandExecutor;
  let deps: WriteImageDeps;

  before(async () => {
    tmp = await tempDir('image-step-');
    server = await startHttpsServer(tmp.dir);
    image = await makeGptImage(tmp.dir, 8);
    server.serve('/image', image, { requireAuthorization: 'Bearer me0w' });
    const iso = buildIso(tmp.dir);
    configDriveSize = iso.length;
    configDriveValue = gzipSync(iso).toString('base64');
    if (!reason) loop = await attachLoop(tmp.dir, 32);
    deps = {
      runner, oci,
      config: { disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, insecure: false, ca_file: server.cert.certPath },
      writeConfigDrive: async (device, value) => {
        assert.ok(typeof value !== 'string', 'the step hands over the drive it loaded ahead');
        if (failConfigDriveWrite) throw new AgentError('CONFIGDRIVE_NO_SPACE', 'no room for the config drive');
        configdrives.push({ device, size: value.size, label: value.label });
        return { partition: 'fake' };
      },
      recordPartitionUuids: (uuids) => { recorded = uuids; },
      getNode: async () => ({ uuid: 'n1', instance_info: { root_device: { name: loop?.device ?? '/dev/none' } } }),
      http: { retries: 0 },
    };
    const steps = new StepRegistry();
    steps.register([createWriteImageStep(deps)]);
    executor = new CommandExecutor({ log: createSilentLogger() });
    executor.register([...createStepCommands(steps), ...createStandbyImageCommands(deps)]);
  });
  after(async () => {
    loop?.detach();
    await oci.close();
    await server?.close();
    await tmp?.cleanup();
  });

  const run = async (name: string, params: unknown): Promise<WireCommandResult> => {
    const { result } = executor.execute(name, params);
    return executor.wait(result.id);
  };
  const imageInfo = (extra: Record<string, unknown> = {}) => ({
    id: 'whole-disk', urls: [`${server.url}/image`], disk_format: 'raw', os_hash_algo: 'sha256', os_hash_value: sha256hex(image),
    image_request_authorization: Buffer.from('Bearer me0w').toString('base64'), stream_raw_images: true, ...extra,
  });
  const node = () => ({ uuid: 'n1', instance_info: { root_device: { name: loop!.device } }, properties: {} });

  test('get_deploy_steps lists write_image at priority 0', async () => {
    const r = await run('deploy.get_deploy_steps', { node: {}, ports: [] });
    const steps = Object.values((r.command_result as { deploy_steps: Record<string, { step: string; priority: number }[]> }).deploy_steps)[0]!;
    assert.deepEqual(steps.map((s) => [s.step, s.priority]), [['write_image', 0]]);
  });

  test('execute_deploy_step write_image: streamed to the hinted disk, config drive, partition UUIDs', async (t) => {
    if (reason) return t.skip(reason);
    const r = await run('deploy.execute_deploy_step', {
      step: { interface: 'deploy', step: 'write_image', priority: 80, args: { image_info: imageInfo(), configdrive: configDriveValue } },
      node: node(), ports: [],
    });
    assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
    const result = (r.command_result as { deploy_result: Record<string, unknown> }).deploy_result;
    assert.equal(result.device, loop!.device);
    assert.match(String(result.result), new RegExp(`image \\(whole-disk\\) written to device ${loop!.device}`));
    assert.equal(sha256hex(await readHead(loop!.device, image.length)), sha256hex(image));
    assert.deepEqual(configdrives.at(-1), { device: loop!.device, size: configDriveSize, label: 'config-2' });
    assert.ok(recorded?.['efi system partition uuid'], JSON.stringify(recorded));
    assert.match(recorded?.['root uuid'] ?? '', /^0x[0-9a-f]{8}$/);
    assert.equal(server.requests.at(-1)?.authorization, 'Bearer me0w');
    assert.deepEqual((r.command_result as { deploy_step: unknown }).deploy_step, { interface: 'deploy', step: 'write_image', priority: 80, args: {} });
  });

  test('progress goes through the step context: disk, download bytes, partitions, done', async (t) => {
    if (reason) return t.skip(reason);
    const reports: Progress[] = [];
    const step = createWriteImageStep(deps);
    await step.run({ image_info: imageInfo() }, { signal: new AbortController().signal, log: createSilentLogger(), reportProgress: (p) => reports.push(p), node: node(), ports: [] });
    assert.deepEqual([...new Set(reports.map((r) => r.phase))], ['disk', 'download', 'partitions', 'done']);
    assert.ok(reports.some((r) => r.phase === 'download' && typeof r.bytes_done === 'number'));
    const last = reports.at(-1)!;
    assert.equal(last.bytes_done, image.length);
    assert.equal(last.bytes_total, image.length);
    assert.equal(last.bytes_written, image.length);
  });

  test('standby.prepare_image does the same with the node from lookup', async (t) => {
    if (reason) return t.skip(reason);
    const r = await run('standby.prepare_image', { image_info: imageInfo({ stream_raw_images: false }) });
    assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
    assert.match(JSON.stringify(r.command_result), /prepare_image: image \(whole-disk\) written/);
  });

  test('a config drive URL that answers 404 fails in phase validate and leaves the disk as it was', async (t) => {
    if (reason) return t.skip(reason);
    const before = sha256hex(await readHead(loop!.device, image.length));
    const requestsBefore = server.requests.length;
    const r = await run('deploy.execute_deploy_step', {
      step: { interface: 'deploy', step: 'write_image', args: { image_info: imageInfo(), configdrive: `${server.url}/no-such-configdrive?sig=s3cret` } },
      node: node(), ports: [],
    });
    assert.equal(r.command_status, 'FAILED');
    assert.match(r.command_error!.details, /^\[CONFIGDRIVE_DOWNLOAD_FAILED\] write_image failed in phase validate: /);
    assert.match(r.command_error!.details, /404/);
    assert.doesNotMatch(r.command_error!.details, /s3cret|cleanup=/);
    assert.deepEqual(server.requests.slice(requestsBefore).map((q) => q.path), ['/no-such-configdrive'], 'only the config drive was asked for');
    assert.equal(sha256hex(await readHead(loop!.device, image.length)), before, 'the disk changed');
  });

  test('an http URL without a checksum: FAILED, IMAGE_CHECKSUM_UNSUPPORTED, before choosing a disk', async () => {
    const info: Record<string, unknown> = imageInfo();
    delete info.os_hash_algo;
    delete info.os_hash_value;
    const r = await run('deploy.execute_deploy_step', { step: { interface: 'deploy', step: 'write_image', args: { image_info: info } }, node: { uuid: 'n1' }, ports: [] });
    assert.equal(r.command_status, 'FAILED');
    assert.match(r.command_error!.details, /^\[IMAGE_CHECKSUM_UNSUPPORTED\] write_image failed in phase validate: Image checksum is not available/);
  });

  test('partition images: FAILED with IMAGE_FORMAT_UNSUPPORTED', async () => {
    const r = await run('standby.prepare_image', { image_info: imageInfo({ image_type: 'partition' }) });
    assert.equal(r.command_status, 'FAILED');
    assert.equal(r.command_error!.type, 'InvalidCommandParamsError');
    assert.match(r.command_error!.details, /^\[IMAGE_FORMAT_UNSUPPORTED\] prepare_image failed in phase validate: Partition images/);
  });

  test('standby.cache_image: FAILED with UNSUPPORTED_COMMAND, never a silent success', async () => {
    const r = await run('standby.cache_image', { image_info: imageInfo(), force: true });
    assert.equal(r.command_name, 'cache_image');
    assert.equal(r.command_status, 'FAILED');
    assert.equal(r.command_error!.type, 'CommandExecutionError');
    assert.match(r.command_error!.details, /^\[UNSUPPORTED_COMMAND\] standby\.cache_image is not supported/);
  });

  test('a config drive failure after the image was written wipes the disk', async (t) => {
    if (reason) return t.skip(reason);
    failConfigDriveWrite = true;
    t.after(() => { failConfigDriveWrite = false; });
    const r = await run('deploy.execute_deploy_step', {
      step: { interface: 'deploy', step: 'write_image', args: { image_info: imageInfo(), configdrive: configDriveValue } },
      node: node(), ports: [],
    });
    assert.equal(r.command_status, 'FAILED');
    assert.match(r.command_error!.details, /^\[CONFIGDRIVE_NO_SPACE\] write_image failed in phase configdrive: no room/);
    assert.match(r.command_error!.details, /cleanup=\{"disk":"wiped"\}/);
    assert.ok((await readHead(loop!.device, 33 * 512)).every((b) => b === 0));
  });

  test('a checksum mismatch fails the step and leaves the disk wiped', async (t) => {
    if (reason) return t.skip(reason);
    const r = await run('deploy.execute_deploy_step', {
      step: { interface: 'deploy', step: 'write_image', args: { image_info: imageInfo({ os_hash_value: '0'.repeat(64) }) } },
      node: node(), ports: [],
    });
    assert.equal(r.command_status, 'FAILED');
    assert.equal(r.command_error!.type, 'ImageChecksumError');
    assert.match(r.command_error!.details, /cleanup=wiped/);
    assert.ok((await readHead(loop!.device, 33 * 512)).every((b) => b === 0));
  });
});
