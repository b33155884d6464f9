// A real bootc deploy through the agent API: createAgent with the real command runner, the fake
// conductor calling back over HTTPS (trusting only agent_verify_ca) and running
// deploy.execute_deploy_step → execute_bootc_install with an oci:// image of the stand-in bootc
// image in a TLS registry with a user, a gzip+base64 config drive and bootc_authorized_keys,
// onto a loop device. Then a failing deploy (an image without bootc) on the same disk.
// Needs root, podman and the tools of `npm run setup`; skips with the reason otherwise.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createAgent, type Agent } from '../../src/agent.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { readConfigDrive } from '../../scripts/demo/configdrive.ts';
import { DeployFailed, driveBootcDeploy, type DriveResult } from '../../scripts/demo/deploy-driver.ts';
import { describeDisk, mountReadOnly } from '../../scripts/demo/loop-disk.ts';
import { startFakeConductor, type FakeConductor } from '../helpers/fake-conductor.ts';
import { STANDIN_AUTH, STANDIN_PULL_SECRET, STANDIN_REGISTRY_PASSWORD } from '../helpers/standin-image.ts';
import { bootcDeployUnavailable, cleanupList, setUpBootcFixture, type BootcFixture } from './bootc-fixture.ts';
import { MACS, testConfig } from './harness.ts';

type Json = Record<string, any>;

// A missing prerequisite skips the suite; node:test prints the reason (`# SKIP <reason>`).
const skip = bootcDeployUnavailable();

describe('execute_bootc_install through the agent API on a loop device', { skip: skip ?? false }, () => {
  const runner = createExecaRunner();
  const cleanups = cleanupList();
  const logLines: string[] = [];
  const nodeUuid = randomUUID();
  let fixture: BootcFixture;
  let conductor: FakeConductor;
  let agent: Agent;
  let stateDir: string;
  let deployed: DriveResult | undefined;

  before(async () => {
    const onCleanup = cleanups.add;
    fixture = await setUpBootcFixture(runner, onCleanup, { nodeUuid });
    conductor = await startFakeConductor({ nodeUuid, macs: [MACS[0]!], heartbeatTimeout: 1 });
    onCleanup('stop the conductor', () => conductor.close());
    stateDir = join(fixture.workDir, 'state');
    const sink = new PassThrough();
    sink.setEncoding('utf8').on('data', (chunk: string) => { logLines.push(...chunk.split('\n').filter(Boolean)); });
    agent = createAgent({
      config: testConfig(conductor.url, stateDir, { include_loop_devices: true, disk_wait_attempts: 3, disk_wait_delay: 1 }),
      log: createLogger({ level: 'debug', stream: sink, file: join(stateDir, 'agent.log') }),
      runner,
      power: { sync: async () => undefined, powerOff: async () => undefined, reboot: async () => undefined },
      version: '0.1.0-test',
      lookupMacs: async () => MACS,
      replyGraceMs: 20,
    });
    onCleanup('stop the agent', () => agent.stop());
    await agent.start();
  });

  after(() => cleanups.run());

  it('installs the image, writes the config drive and the SSH key, reports progress, and keeps secrets to itself', async (t) => {
    const started = Date.now();
    let result: DriveResult;
    try {
      result = await driveBootcDeploy({
        conductor,
        pollMs: 100,
        timeoutMs: 10 * 60_000,
        request: {
          imageSource: fixture.imageSource,
          configdrive: fixture.configdrive,
          ociPullSecret: STANDIN_PULL_SECRET,
          instanceInfo: { root_device: { name: fixture.disk.device }, bootc_authorized_keys: fixture.authorizedKey },
        },
      });
    } catch (err) {
      if (err instanceof DeployFailed) assert.fail(`${err.message}\n${JSON.stringify(err.command.command_error, null, 2)}`);
      throw err;
    }
    deployed = result;
    t.diagnostic(`deploy took ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const command = result.command;
    assert.equal(command.command_name, 'execute_deploy_step');
    assert.deepEqual(command.command_result.deploy_step, { interface: 'deploy', step: 'execute_bootc_install', priority: 0, args: {} });
    const r = command.command_result.deploy_result as Json;
    assert.equal(r.result, `execute_bootc_install: Container image (${fixture.imageSource}) written to device ${fixture.disk.device}`);
    assert.equal(r.device, fixture.disk.device);
    assert.equal(r.image_digest, fixture.digest);
    assert.equal(r.bootc_version, '1.15.1');

    // The disk: bootc's layout, then the config drive in the last 64 MiB-ish.
    const disk = await describeDisk(runner, fixture.disk.device);
    assert.equal(disk.label, 'gpt');
    assert.deepEqual(disk.partitions.map((p) => p.name), ['BIOS-BOOT', 'EFI-SYSTEM', 'root', 'config-2']);
    const [, esp, root, cd] = disk.partitions;
    assert.equal(esp!.fstype, 'vfat');
    assert.equal(root!.fstype, 'xfs');
    assert.equal(cd!.fstype, 'iso9660');
    assert.equal(cd!.fslabel, 'config-2');
    assert.ok(cd!.sizeBytes >= 64 * 1048576 && cd!.sizeBytes < 70 * 1048576, `config-2 is ${cd!.sizeBytes} bytes`);
    assert.ok((cd!.start * disk.sectorSize + cd!.sizeBytes) > fixture.disk.sizeBytes - 1048576, 'config-2 sits at the end of the disk');
    assert.equal((r.configdrive as Json).partition.path, cd!.node);
    const drive = await readConfigDrive(runner, cd!.node, 'iso9660');
    assert.deepEqual(drive.metaData, { uuid: nodeUuid, name: 'test-node', public_keys: {} });
    assert.ok(drive.files.includes('/openstack/latest/user_data'));

    // The root filesystem: the deployment with the injected key (tmpfiles.d f~, base64).
    const mount = await mountReadOnly(runner, root!.node, fixture.workDir);
    t.after(() => mount.unmount());
    const deployDir = join(mount.path, 'ostree', 'deploy', 'default', 'deploy');
    const deployment = (await readdir(deployDir)).find((e) => !e.endsWith('.origin'))!;
    const tmpfiles = await readFile(join(deployDir, deployment, 'etc', 'tmpfiles.d', 'bootc-root-ssh.conf'), 'utf8');
    const fLine = tmpfiles.split('\n').find((l) => l.startsWith('f~'))!;
    assert.equal(Buffer.from(fLine.trim().split(/\s+/).pop()!, 'base64').toString('utf8').trim(), fixture.authorizedKey);
    await mount.unmount();

    // standby.get_partition_uuids (IPA's keys) from what the deploy recorded.
    const uuids = (await conductor.callAgent({ path: '/v1/commands/', query: { wait: 'true' }, body: { name: 'standby.get_partition_uuids', params: {} } })).body as Json;
    assert.equal(uuids.command_status, 'SUCCEEDED');
    assert.match(String(uuids.command_result['root uuid']), /^[0-9a-f-]{36}$/i);
    assert.match(String(uuids.command_result['efi system partition uuid']), /^[0-9a-f-]{36}$/i);

    // Progress: every phase in order in the agent's log, pull bytes up to the image size, and
    // the running phase in the heartbeats' agent_status_message.
    const progress = logLines.map((l) => JSON.parse(l) as Json).filter((l) => l.msg === 'progress' && l.command === 'deploy.execute_deploy_step').map((l) => l.progress as Json);
    const phases = progress.map((p) => p.phase).filter((p, i, all) => p !== all[i - 1]);
    assert.deepEqual(phases, ['resolve', 'admission', 'disk', 'pull', 'probe', 'install', 'verify', 'configdrive', 'done']);
    const pulls = progress.filter((p) => p.phase === 'pull' && typeof p.bytes_total === 'number');
    assert.ok(pulls.length >= 2);
    assert.equal(pulls.at(-1)!.bytes_done, pulls.at(-1)!.bytes_total);
    const messages = conductor.acceptedHeartbeats.map((h) => (h.body as Json).agent_status_message).filter((m): m is string => typeof m === 'string');
    assert.ok(messages.some((m) => m.startsWith('deploy.execute_deploy_step: install: ')), `heartbeat messages: ${JSON.stringify(messages)}`);
    assert.equal(conductor.heartbeats.filter((h) => h.status !== 202).length, 0);

    // Secrets: no auth file left behind, and neither the pull secret nor the token in the log or
    // in anything the conductor can read back.
    assert.deepEqual(await readdir(join(stateDir, 'secrets')).catch(() => []), []);
    const everything = [logLines.join('\n'), await readFile(join(stateDir, 'agent.log'), 'utf8').catch(() => ''), JSON.stringify((await conductor.callAgent({ path: '/v1/commands/' })).body)].join('\n');
    for (const secret of [STANDIN_REGISTRY_PASSWORD, STANDIN_AUTH, STANDIN_PULL_SECRET, conductor.token]) {
      assert.ok(!everything.includes(secret), `a secret (${secret.slice(0, 4)}…) leaked into the log or the command results`);
    }
  });

  it('records the tag of image_source as bootc\'s update source (--target-imgref)', async (t) => {
    if (!deployed) return t.skip('the deploy above failed');
    const r = deployed.command.command_result.deploy_result as Json;
    const expected = fixture.imageSource.slice('oci://'.length);
    assert.equal(r.target_imgref, expected, 'bootc must follow the user\'s tag, not a digest or a mangled name');
  });

  it('fails an image without bootc with a clear error, before the disk is touched', async () => {
    await assert.rejects(driveBootcDeploy({
      conductor,
      pollMs: 100,
      timeoutMs: 5 * 60_000,
      request: {
        imageSource: fixture.noBootcSource,
        configdrive: null,
        ociPullSecret: STANDIN_PULL_SECRET,
        instanceInfo: { root_device: { name: fixture.disk.device } },
      },
    }), (err: unknown) => {
      assert.ok(err instanceof DeployFailed, String(err));
      const error = err.command.command_error as Json;
      assert.equal(err.command.command_status, 'FAILED');
      assert.equal(error.type, 'ImageDownloadError');
      assert.match(error.details, /does not contain the required bootc binary/);
      assert.match(error.details, /phase=probe/);
      return true;
    });
    // The probe failed before the install began: the disk is as the previous deploy left it
    // (nothing of this deploy was written, so nothing is wiped).
    const table = await runner.run('sfdisk', ['--json', '--', fixture.disk.device], { okExitCodes: [0, 1] });
    const partitions = table.exitCode === 0 ? (JSON.parse(table.stdout) as Json).partitiontable.partitions ?? [] : [];
    assert.deepEqual(partitions.map((p: Json) => p.name), deployed ? ['BIOS-BOOT', 'EFI-SYSTEM', 'root', 'config-2'] : []);
  });
});
