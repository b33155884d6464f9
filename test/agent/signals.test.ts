// The real agent process (tsx src/main.ts) stopped or killed while a command runs a program
// (issue 13, findings 1 and 2): a clean step waits in `lsblk`, a stand-in on PATH that lists no
// disk (test/fixtures/slow-tools/lsblk). SIGTERM cancels the command the way a cancel does,
// stops the heartbeats and exits 0, within shutdown_timeout; SIGKILL leaves the journal, and the
// restarted agent reports the command FAILED to a conductor waiting like Ironic ≥ 29.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.ts';
import { localMacAddresses, startFakeConductor, type FakeConductor, type StepDecision } from '../helpers/fake-conductor.ts';
import { freePort } from '../helpers/registry.ts';
import { eventually, tempDir, within } from './harness.ts';

type Json = Record<string, any>;

const SLOW_TOOLS = new URL('../fixtures/slow-tools', import.meta.url).pathname;
const macs = await localMacAddresses();
const skip = macs.length === 0 ? 'no network interface with a MAC address here: the agent cannot look itself up' : false;

interface Scene {
  conductor: FakeConductor;
  dir: string;
  stateDir: string;
  port: number;
  toolLog: string;
  start(options?: { flags?: string[]; env?: Record<string, string> }): Promise<AgentProcess>;
}

async function scene(t: TestContext): Promise<Scene> {
  const dir = await tempDir(t, 'agent-process-');
  const stateDir = join(dir, 'state');
  await mkdir(stateDir);
  const conductor = await startFakeConductor({ macs });
  t.after(() => conductor.close());
  const port = await freePort();
  const toolLog = join(dir, 'tool.log');
  return {
    conductor, dir, stateDir, port, toolLog,
    async start(options = {}) {
      const agent = await startAgentProcess({
        apiUrl: conductor.url, stateDir, port, pathPrefix: [SLOW_TOOLS], flags: options.flags,
        env: { SLOW_TOOL_LOG: toolLog, ...options.env },
      });
      t.after(async () => {
        agent.killGroup();
        await agent.exited;
      });
      return agent;
    },
  };
}

// The agent is up and its clean step waits in the stand-in lsblk.
async function runningInLsblk(s: Scene, agent: AgentProcess): Promise<{ id: string; decision: Promise<StepDecision> }> {
  await eventually(() => s.conductor.agentUrl, 60_000, `the first heartbeat (${agent.stderr()})`);
  const { command, decision } = await s.conductor.startStep('clean', 'erase_devices_metadata');
  assert.equal(command.command_status, 'RUNNING');
  await eventually(async () => (await readFile(s.toolLog, 'utf8').catch(() => '')).includes('started'), 30_000, 'the stand-in lsblk to start');
  return { id: command.id, decision };
}

describe('the agent process and signals', { skip }, () => {
  it('SIGTERM during a command: the command is cancelled, heartbeats stop, exit 0; the next start reports it FAILED', async (t) => {
    const s = await scene(t);
    const agent = await s.start();
    const { id, decision } = await runningInLsblk(s, agent);
    const termAt = Date.now();
    agent.kill('SIGTERM');
    const code = await within(agent.exited, 20_000, 'the agent to exit');
    const stoppedAt = Date.now();
    t.diagnostic(`exited ${code} ${stoppedAt - termAt} ms after SIGTERM`);
    assert.equal(code, 0, `exit ${code}: ${agent.stderr()}`);

    // Cancelled through the runner: the program got SIGTERM, the command failed CANCELLED.
    assert.match(await readFile(s.toolLog, 'utf8'), /^terminated \d+$/m);
    const records = await agent.logRecords();
    const failed = records.find((r) => r.msg === 'command failed');
    assert.equal(failed?.err?.code, 'CANCELLED', JSON.stringify(failed));
    const order = ['command failed', 'stopping heartbeats'].map((msg) => records.findIndex((r) => r.msg === msg));
    assert.ok(order[0]! >= 0 && order[1]! > order[0]!, `cancelled, then heartbeats stopped: ${JSON.stringify(order)}`);
    const beats = s.conductor.heartbeats.length;
    await sleep(1000);
    assert.equal(s.conductor.heartbeats.length, beats, 'no heartbeat after the agent exited');

    // Started again (by hand or by systemd), it tells the waiting conductor the step failed.
    const restarted = await s.start();
    const seen = await within(decision, 60_000, `a decision (${restarted.stderr()})`);
    assert.equal(seen.outcome, 'failed');
    assert.equal(seen.command?.id, id);
    assert.equal(seen.command?.command_error?.message, 'Command execute_clean_step (clean step erase_devices_metadata) was interrupted: the agent stopped on SIGTERM');
    restarted.kill('SIGTERM');
    assert.equal(await within(restarted.exited, 20_000, 'the idle agent to exit'), 0, 'an idle agent exits 0 on SIGTERM');
  });

  it('SIGKILL during a command: the restarted agent reports it FAILED instead of an empty command list', async (t) => {
    const s = await scene(t);
    const agent = await s.start();
    const { id, decision } = await runningInLsblk(s, agent);
    agent.kill('SIGKILL');
    assert.equal(await agent.exited, 'SIGKILL');
    const restarted = await s.start();
    const seen = await within(decision, 60_000, `a decision (${restarted.stderr()})`);
    assert.equal(seen.outcome, 'failed', `the conductor decided ${seen.outcome}`);
    assert.equal(seen.command?.id, id);
    const error = seen.command!.command_error!;
    assert.equal(error.message, 'Command execute_clean_step (clean step erase_devices_metadata) was interrupted: the agent was killed or crashed and started again');
    assert.match(error.details, /^\[COMMAND_INTERRUPTED\]/);
    const listed = (await s.conductor.callAgent({ path: '/v1/commands/' })).body as Json;
    assert.deepEqual(listed.commands.map((c: Json) => [c.id, c.command_name, c.command_status]), [[id, 'execute_clean_step', 'FAILED']]);
  });

  it('a shutdown that does not finish within shutdown_timeout ends the process with 1', async (t) => {
    const s = await scene(t);
    // The program ignores SIGTERM: the runner's SIGKILL comes only 5 s later.
    const agent = await s.start({ flags: ['--shutdown-timeout', '1'], env: { SLOW_TOOL_IGNORE_TERM: '1' } });
    await runningInLsblk(s, agent);
    const termAt = Date.now();
    agent.kill('SIGTERM');
    const code = await within(agent.exited, 20_000, 'the agent to exit');
    const took = Date.now() - termAt;
    t.diagnostic(`exited ${code} ${took} ms after SIGTERM`);
    assert.equal(code, 1);
    assert.ok(took >= 900 && took < 4000, `exited ${took} ms after SIGTERM`);
    assert.ok((await agent.logRecords()).some((r) => r.msg === 'shutdown did not finish in time; exiting'));
  });
});
