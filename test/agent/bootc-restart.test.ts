// The real agent process deploying the stand-in bootc image onto a loop disk, stopped mid-install
// (issue 13, findings 1 and 2): the stand-in's install holds after partitioning the disk
// (`standin.sleep`), the moment a kill leaves only BIOS-BOOT and an unformatted ESP behind.
// - SIGKILL, then a restart (what systemd's Restart= does): the privileged install container,
//   left running, is removed, the disk wiped, and the conductor — waiting like Ironic ≥ 29 —
//   sees the step FAILED; a retried deploy then succeeds on the same disk.
// - SIGTERM: the install is cancelled like a cancel (container removed, disk wiped, inject
//   directory removed), heartbeats stop, exit 0; the next start reports the step FAILED.
// Needs root, podman and the tools of `npm run setup`; skips with the reason otherwise.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createExecaRunner } from '../../src/exec/index.ts';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.ts';
import { localMacAddresses, startFakeConductor, type FakeConductor, type StepDecision, type WireCommand } from '../helpers/fake-conductor.ts';
import { freePort } from '../helpers/registry.ts';
import { STANDIN_PULL_SECRET } from '../helpers/standin-image.ts';
import { bootcDeployUnavailable, cleanupList, setUpBootcFixture, type BootcFixture } from './bootc-fixture.ts';
import { eventually, within } from './harness.ts';

type Json = Record<string, any>;

const macs = await localMacAddresses();
const skip = bootcDeployUnavailable() ?? (process.getuid?.() !== 0 ? 'needs root' : undefined) ?? (macs.length === 0 ? 'no network interface with a MAC address: the agent cannot look itself up' : undefined);

describe('execute_bootc_install interrupted in the real agent process', { skip: skip ?? false }, () => {
  const runner = createExecaRunner();
  const cleanups = cleanupList();
  const nodeUuid = randomUUID();
  let fixture: BootcFixture;

  before(async () => {
    fixture = await setUpBootcFixture(runner, cleanups.add, { nodeUuid });
  });

  after(() => cleanups.run());

  // A conductor, a state_dir and a port for one agent that the test starts (and restarts).
  async function scene(t: TestContext, name: string) {
    const conductor = await startFakeConductor({ nodeUuid, macs });
    t.after(() => conductor.close());
    const stateDir = join(fixture.workDir, `state-${name}`);
    await mkdir(stateDir, { recursive: true });
    const port = await freePort();
    const start = async (): Promise<AgentProcess> => {
      const agent = await startAgentProcess({
        apiUrl: conductor.url, stateDir, port,
        flags: ['--include-loop-devices', 'true', '--disk-wait-attempts', '3', '--disk-wait-delay', '1'],
      });
      t.after(async () => {
        agent.killGroup();
        await agent.exited;
      });
      await eventually(() => conductor.acceptedHeartbeats.length > 0 && conductor.agentUrl, 120_000, `a heartbeat (${agent.stderr()})`);
      return agent;
    };
    return { conductor, stateDir, start };
  }

  const deployArgs = (holdSeconds: number | undefined) => ({
    args: { image_source: fixture.imageSource, oci_pull_secret: STANDIN_PULL_SECRET, configdrive: fixture.configdrive },
    node: { instance_info: { root_device: { name: fixture.disk.device }, ...(holdSeconds ? { bootc_kargs: [`standin.sleep=${holdSeconds}`] } : {}) } },
  });

  // The install phase has partitioned the disk and holds: returns the install container's name.
  async function holdingMidInstall(conductor: FakeConductor): Promise<string> {
    await eventually(async () => {
      const list = (await conductor.callAgent({ path: '/v1/commands/' })).body as { commands: WireCommand[] };
      const last = list.commands.at(-1);
      assert.notEqual(last?.command_status, 'FAILED', JSON.stringify(last?.command_error));
      return last?.command_result?.progress?.phase === 'install';
    }, 10 * 60_000, 'the install phase');
    await eventually(async () => (await partitions()).length >= 2, 120_000, 'the stand-in to partition the disk');
    return eventually(async () => {
      const ps = await runner.run('podman', ['ps', '--format', 'json']);
      const ours = (JSON.parse(ps.stdout) as Json[]).find((c) => String(c.Names?.[0] ?? '').startsWith('bootc-agent-install-') && JSON.stringify(c.Command ?? []).includes(fixture.disk.device));
      return ours ? String(ours.Names[0]) : undefined;
    }, 30_000, 'the install container');
  }

  async function partitions(): Promise<Json[]> {
    const table = await runner.run('sfdisk', ['--json', '--', fixture.disk.device], { okExitCodes: [0, 1] });
    return table.exitCode === 0 ? (JSON.parse(table.stdout) as Json).partitiontable.partitions ?? [] : [];
  }

  async function containerExists(name: string): Promise<boolean> {
    return (await runner.run('podman', ['container', 'exists', '--', name], { okExitCodes: [0, 1] })).exitCode === 0;
  }

  async function assertWiped(): Promise<void> {
    assert.deepEqual(await partitions(), []);
    const signatures = await runner.run('wipefs', ['--no-act', '--', fixture.disk.device]);
    assert.equal(signatures.stdout.trim(), '', `signatures left on ${fixture.disk.device}: ${signatures.stdout}`);
  }

  it('SIGKILL mid-install, restart: orphaned container removed, disk wiped, the conductor sees FAILED, a retry succeeds', async (t) => {
    const { conductor, start } = await scene(t, 'kill');
    const agent = await start();
    const { command, decision } = await conductor.startStep('deploy', 'execute_bootc_install', deployArgs(600));
    const container = await holdingMidInstall(conductor);
    agent.kill('SIGKILL');
    assert.equal(await agent.exited, 'SIGKILL');
    assert.ok(await containerExists(container), 'the install container outlived the agent (nothing else removes it)');

    await start();
    const seen: StepDecision = await within(decision, 5 * 60_000, 'a decision');
    assert.equal(seen.outcome, 'failed', `the conductor decided ${seen.outcome}: ${JSON.stringify(seen.command)}`);
    assert.equal(seen.command?.id, command.id);
    const details = seen.command!.command_error!.details;
    assert.match(details, /^\[COMMAND_INTERRUPTED\] Command execute_deploy_step \(deploy step execute_bootc_install\) was interrupted in phase install: the agent was killed or crashed and started again/);
    assert.ok(details.includes(`device=${fixture.disk.device}; disk_written=true`), details);
    assert.ok(details.includes(`"containers":[`) && details.includes(container), details);
    assert.match(details, /"disk":"wiped"/);
    assert.equal(await containerExists(container), false, 'the orphaned install container is gone');
    await assertWiped();
    await sleep(3000);
    await assertWiped(); // and nothing writes it any more

    // A conductor that retries the step gets a clean disk and an agent that takes the command.
    const retry = await conductor.startStep('deploy', 'execute_bootc_install', deployArgs(undefined));
    const retried = await within(retry.decision, 10 * 60_000, 'the retried deploy');
    assert.equal(retried.outcome, 'succeeded', JSON.stringify(retried.command?.command_error));
    assert.deepEqual((await partitions()).map((p) => p.name), ['BIOS-BOOT', 'EFI-SYSTEM', 'root', 'config-2']);
  });

  it('SIGTERM mid-install: cancelled like a cancel, exit 0; the next start reports the step FAILED', async (t) => {
    const { conductor, stateDir, start } = await scene(t, 'term');
    const agent = await start();
    const { command, decision } = await conductor.startStep('deploy', 'execute_bootc_install', deployArgs(600));
    const container = await holdingMidInstall(conductor);
    assert.ok((await readdir(stateDir)).some((f) => f.startsWith('inject-')), 'the install has its inject directory');
    const termAt = Date.now();
    agent.kill('SIGTERM');
    const code = await within(agent.exited, 60_000, 'the agent to exit');
    t.diagnostic(`exited ${code} ${Date.now() - termAt} ms after SIGTERM`);
    assert.equal(code, 0, agent.stderr());
    assert.equal(await containerExists(container), false, 'the install container was removed');
    await assertWiped();
    assert.deepEqual((await readdir(stateDir)).filter((f) => f.startsWith('inject-')), [], 'the inject directory was removed');
    const records = await agent.logRecords();
    const failed = records.find((r) => r.msg === 'command failed');
    assert.match(String(failed?.err?.message), /failed in phase install/);
    const beats = conductor.heartbeats.length;
    await sleep(1000);
    assert.equal(conductor.heartbeats.length, beats, 'no heartbeat after the agent exited');

    await start();
    const seen = await within(decision, 5 * 60_000, 'a decision');
    assert.equal(seen.outcome, 'failed');
    assert.equal(seen.command?.id, command.id);
    assert.match(seen.command!.command_error!.message, /was interrupted in phase install: the agent stopped on SIGTERM$/);
  });
});
