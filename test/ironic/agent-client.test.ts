// The agent driven by the real conductor-side client: Debian's python3-ironic
// `ironic.drivers.modules.agent_client.AgentClient` (test/ironic/agent_client.py), over HTTPS,
// verifying the agent with the certificate it sent as agent_verify_ca (a file path, as the
// conductor stores it): a tour of the commands a conductor uses, then one real bootc deploy
// posted with AgentClient.execute_deploy_step onto a loop device. Skipped with a reason when
// /usr/bin/python3 cannot import ironic (or, for the deploy, without root/podman/disk tools).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HARDWARE_MANAGER_VERSIONS } from '../../src/commands/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { readConfigDrive } from '../../scripts/demo/configdrive.ts';
import { describeDisk } from '../../scripts/demo/loop-disk.ts';
import { bootcDeployUnavailable, setUpBootcFixture } from '../agent/bootc-fixture.ts';
import {
  createRecordingPower, eventually, logCollectionRunner, MACS, slowStep, startTestAgent, tempDir, type RecordingPower,
} from '../agent/harness.ts';
import { startFakeConductor } from '../helpers/fake-conductor.ts';
import { STANDIN_PULL_SECRET } from '../helpers/standin-image.ts';

export const PYTHON = '/usr/bin/python3';
export const SCRIPT = fileURLToPath(new URL('./agent_client.py', import.meta.url));

type Json = Record<string, any>;

/** Why the real client cannot run here, or undefined when it can. */
export function ironicUnavailable(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', 'import ironic.drivers.modules.agent_client'], { encoding: 'utf8', timeout: 60_000 });
  if (probe.error) return `${PYTHON} cannot run (${probe.error.message}); install python3-ironic`;
  if (probe.status !== 0) return `${PYTHON} cannot import ironic.drivers.modules.agent_client (install python3-ironic): ${probe.stderr.trim().split('\n').pop()}`;
  return undefined;
}

/**
 * Runs agent_client.py with `spec` on stdin (it may hold a pull secret, which must not sit in a
 * file or argv); kills it if the test ends first.
 */
export async function runAgentClient(t: TestContext, spec: Record<string, unknown>, timeoutMs = 120_000): Promise<{ result: Json; stderr: string }> {
  const child = spawn(PYTHON, [SCRIPT, '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(JSON.stringify(spec));
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  assert.equal(code, 0, `agent_client.py exited ${code}\n${stderr}`);
  const result = JSON.parse(stdout) as Json;
  assert.equal(result.fatal, undefined, `agent_client.py failed: ${JSON.stringify(result.fatal)}\n${stderr}`);
  return { result, stderr };
}

/** Agent and conductor state the python client needs. */
export async function agentClientSpec(t: TestContext, target: { agentUrl: string; token: string; certPem: string; nodeUuid: string }) {
  const caFile = join(await tempDir(t, 'agent-ca-'), `${target.nodeUuid}.crt`);
  await writeFile(caFile, target.certPem);
  return {
    agent_url: target.agentUrl,
    token: target.token,
    ca_file: caFile,
    node_uuid: target.nodeUuid,
    mac: MACS[1],
    slow_step: slowStep.step,
    hardware_manager_version: { ...HARDWARE_MANAGER_VERSIONS },
  };
}

describe('Ironic AgentClient (python3-ironic) against createAgent', () => {
  it('lists steps, runs a step and polls it, is told the agent is busy, syncs, collects logs and powers off', async (t) => {
    const reason = ironicUnavailable();
    if (reason) {
      t.diagnostic(`skipped: ${reason}`);
      t.skip(reason);
      return;
    }
    const power: RecordingPower = createRecordingPower();
    // A real logger writing <state_dir>/agent.log, so the archive holds it (token redacted).
    const stateDir = await tempDir(t);
    const log = createLogger({ level: 'debug', file: join(stateDir, 'agent.log'), stream: new PassThrough().resume() });
    const { conductor, agent } = await startTestAgent(t, {
      power, stateDir, log,
      extraSteps: [slowStep],
      runner: logCollectionRunner(createExecaRunner()),
      replyGraceMs: 50,
    });
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');
    const spec = await agentClientSpec(t, { agentUrl: conductor.agentUrl!, token: conductor.token, certPem: conductor.agentVerifyCa!, nodeUuid: conductor.nodeUuid });

    const started = Date.now();
    const { result: r } = await runAgentClient(t, spec);
    t.diagnostic(`python3-ironic ${r.ironic_version}: ${Date.now() - started} ms`);

    // Ironic 21.4 does not send agent_token when listing commands; the agent (like IPA ≥ 12)
    // requires it, so the unmodified call fails. The script then sends it like newer conductors.
    assert.equal(r.unpatched_get_commands_status.error, 'KeyError', JSON.stringify(r.unpatched_get_commands_status));

    const steps = r.get_deploy_steps;
    assert.equal(steps.command_status, 'SUCCEEDED');
    assert.equal(steps.command_name, 'get_deploy_steps');
    const deploySteps = Object.values(steps.command_result.deploy_steps as Record<string, Json[]>)[0]!.map((s) => s.step).sort();
    for (const name of ['execute_bootc_install', 'test_slow']) assert.ok(deploySteps.includes(name), `${name} in ${deploySteps.join(', ')}`);
    assert.deepEqual(steps.command_result.hardware_manager_version, HARDWARE_MANAGER_VERSIONS);
    assert.equal(r.get_clean_steps.command_status, 'SUCCEEDED');

    assert.equal(r.execute_deploy_step.command_status, 'RUNNING');
    assert.equal(r.busy.error, 'AgentInProgress', JSON.stringify(r.busy));
    assert.match(r.busy.message, /Agent is busy/);
    const final = r.execute_deploy_step_final;
    assert.equal(final.command_status, 'SUCCEEDED', JSON.stringify(final.command_error));
    assert.equal(final.id, r.execute_deploy_step.id);
    // The conductor matches the finished step by interface + step (agent_base._get_completed_command).
    assert.equal(final.command_result.deploy_step.interface, 'deploy');
    assert.equal(final.command_result.deploy_step.step, 'test_slow');
    assert.equal(final.command_result.deploy_result, 'slept 1500 ms');
    assert.ok(final._progress_seen.length >= 2, `progress seen while RUNNING: ${JSON.stringify(final._progress_seen)}`);
    assert.equal(final._progress_seen[0].phase, 'work');

    assert.equal(r.sync.command_status, 'SUCCEEDED');

    const logs = r.collect_system_logs;
    assert.equal(logs.command_status, 'SUCCEEDED');
    assert.ok(logs.bytes > 100);
    for (const name of ['agent.log', 'index.txt', 'cmdline.txt', 'ps.txt']) assert.ok(logs.files.includes(name), `${name} in ${logs.files.join(', ')}`);
    assert.deepEqual(logs.token_leaked_in, [], 'the agent token appears in the log archive');

    assert.equal(r.power_off.command_status, 'RUNNING');
    assert.equal(r.power_off_final.command_status, 'SUCCEEDED');
    assert.deepEqual(power.actions, ['sync', 'sync', 'powerOff']);
    assert.deepEqual(r.commands, [
      ['get_deploy_steps', 'SUCCEEDED'], ['get_clean_steps', 'SUCCEEDED'], ['execute_deploy_step', 'SUCCEEDED'],
      ['sync', 'SUCCEEDED'], ['collect_system_logs', 'SUCCEEDED'], ['power_off', 'SUCCEEDED'],
    ]);
    assert.equal(agent.token, conductor.token);
  });

  it('runs a bootc deploy posted by AgentClient.execute_deploy_step onto a loop device', async (t) => {
    const reason = ironicUnavailable() ?? bootcDeployUnavailable();
    if (reason) {
      t.diagnostic(`skipped: ${reason}`);
      t.skip(reason);
      return;
    }
    const runner = createExecaRunner();
    const nodeUuid = randomUUID();
    const fixture = await setUpBootcFixture(runner, (_what, fn) => t.after(fn), { nodeUuid });
    const conductor = await startFakeConductor({ nodeUuid, macs: [MACS[1]!] });
    t.after(() => conductor.close());
    await startTestAgent(t, {
      conductor,
      runner,
      config: { include_loop_devices: true, disk_wait_attempts: 3, disk_wait_delay: 1 },
    });
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');
    const spec = {
      ...await agentClientSpec(t, { agentUrl: conductor.agentUrl!, token: conductor.token, certPem: conductor.agentVerifyCa!, nodeUuid }),
      only_bootc: true,
      bootc: {
        // The three args BootcAgentDeploy.execute_bootc_install sends (ipa-protocol.md §1.2).
        args: { image_source: fixture.imageSource, configdrive: fixture.configdrive, oci_pull_secret: STANDIN_PULL_SECRET },
        instance_info: { root_device: { name: fixture.disk.device }, bootc_authorized_keys: fixture.authorizedKey },
        timeout: 600,
      },
    };
    const { result: r } = await runAgentClient(t, spec, 15 * 60_000);
    t.diagnostic(`bootc deploy via AgentClient: ${r.bootc_seconds} s`);

    assert.equal(r.bootc_started.command_status, 'RUNNING');
    const final = r.bootc_final;
    assert.equal(final.command_status, 'SUCCEEDED', JSON.stringify(final.command_error));
    assert.equal(final.command_result.deploy_step.step, 'execute_bootc_install');
    assert.equal(final.command_result.deploy_result.device, fixture.disk.device);
    assert.equal(final.command_result.deploy_result.image_digest, fixture.digest);
    assert.ok(final._progress_seen.some((p: Json) => p.phase === 'install'), JSON.stringify(final._progress_seen.map((p: Json) => p.phase)));
    assert.equal(r.get_partition_uuids.command_status, 'SUCCEEDED');
    assert.match(String(r.get_partition_uuids.command_result['root uuid']), /^[0-9a-f-]{36}$/i);

    const disk = await describeDisk(runner, fixture.disk.device);
    assert.deepEqual(disk.partitions.map((p) => p.name), ['BIOS-BOOT', 'EFI-SYSTEM', 'root', 'config-2']);
    const cd = disk.partitions.at(-1)!;
    const drive = await readConfigDrive(runner, cd.node, cd.fstype);
    assert.equal(drive.metaData.uuid, nodeUuid);
  });
});
