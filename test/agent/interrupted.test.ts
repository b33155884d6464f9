// What the conductor sees around a command's end and an agent restart, with the fake conductor
// waiting for the step the way Ironic ≥ 29 does (a heartbeat, then the last command of the list):
// a finished step is seen within half a second (issue 13, finding 3), and a step the previous run
// of the agent was killed in is seen FAILED, its disk wiped first (finding 1).
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { describe, it } from 'node:test';
import type { CommandRunner } from '../../src/exec/index.ts';
import { createStateStore } from '../../src/state/index.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';
import { KILLED_MID_INSTALL, recoveryAnswers } from '../helpers/interrupted-install.ts';
import { createGatedStep, echoStep, eventually, executeDeployStep, heartbeatsQuiet, startTestAgent, tempDir, within } from './harness.ts';

type Json = Record<string, any>;

describe('the conductor learns how a step ended', () => {
  for (const ending of ['failed', 'succeeded'] as const) {
    it(`from a heartbeat within 0.5 s of the step having ${ending}, however recent the last heartbeat`, async (t) => {
      const gated = createGatedStep();
      const { conductor } = await startTestAgent(t, { extraSteps: [gated.definition] });
      await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');
      const { command, decision } = await conductor.startStep('deploy', 'test_gated');
      assert.equal(command.command_status, 'RUNNING');
      await gated.started;
      // The last heartbeat went out moments ago (at start-up); heartbeat_timeout is 300 s.
      const endedAt = Date.now();
      if (ending === 'failed') gated.fail(new Error('the disk caught fire')); else gated.release({ ok: true });
      const seen = await within(decision, 10_000, 'a decision');
      t.diagnostic(`heartbeat ${seen.heartbeatAt - endedAt} ms, decision ${seen.decidedAt - endedAt} ms after the step ended`);
      assert.equal(seen.outcome, ending);
      assert.equal(seen.command?.id, command.id);
      assert.ok(seen.heartbeatAt - endedAt <= 500, `the heartbeat came ${seen.heartbeatAt - endedAt} ms after the step ended`);
    });
  }
});

describe('a restart after the agent was killed during a deploy step', () => {
  it('cleans up before the API listens, and the conductor sees the step FAILED instead of an empty list', async (t) => {
    const stateDir = await tempDir(t);
    createStateStore(stateDir).writeJournal(JSON.stringify(KILLED_MID_INSTALL));
    const fake = createFakeRunner(recoveryAnswers());
    const calledAt: number[] = [];
    const runner: CommandRunner = { run: (file, args, options) => { calledAt.push(Date.now()); return fake.run(file, args, options); } };
    const { agent, conductor } = await startTestAgent(t, { stateDir, runner, extraSteps: [echoStep], noStart: true });
    // The conductor was waiting for the step when the agent died.
    const decision = conductor.awaitStep('deploy', 'execute_bootc_install');
    await agent.start();
    const seen = await within(decision, 10_000, 'a decision');
    assert.equal(seen.outcome, 'failed', `the conductor decided ${seen.outcome} from ${JSON.stringify(seen.command)}`);
    assert.equal(seen.command!.id, KILLED_MID_INSTALL.id);
    assert.equal(seen.command!.command_name, 'execute_deploy_step');
    const error = seen.command!.command_error!;
    assert.match(error.details, /^\[COMMAND_INTERRUPTED\] Command execute_deploy_step \(deploy step execute_bootc_install\) was interrupted in phase install/);
    assert.match(error.details, /device=\/dev\/vda; disk_written=true/);
    assert.match(error.details, /"disk":"wiped"/);

    // Containers removed and the disk wiped before the first heartbeat could reach the conductor.
    const lines = fake.commandLines();
    assert.equal(lines[0], `podman rm --force --ignore --time 0 -- ${KILLED_MID_INSTALL.containers.join(' ')}`);
    assert.ok(lines.includes('sgdisk --zap-all -- /dev/vda'));
    assert.ok(Math.max(...calledAt) <= conductor.acceptedHeartbeats[0]!.at, 'the clean-up ran before the first heartbeat');
    // The node's last status message (Ironic keeps it) no longer shows the killed run's progress.
    assert.equal((conductor.acceptedHeartbeats[0]!.body as Json).agent_status_message, 'execute_deploy_step: FAILED (the agent was stopped during it)');
    assert.deepEqual(await readdir(stateDir).then((f) => f.filter((n) => n.startsWith('command'))), [], 'the journal is gone');

    // The list holds just that command, and the agent takes new ones.
    const listed = (await conductor.callAgent({ path: '/v1/commands/' })).body as Json;
    assert.deepEqual(listed.commands.map((c: Json) => [c.id, c.command_status]), [[KILLED_MID_INSTALL.id, 'FAILED']]);
    await heartbeatsQuiet(conductor, 300);
    const next = await conductor.callAgent({ path: '/v1/commands/', query: { wait: 'true' }, body: executeDeployStep('test_echo') });
    assert.equal((next.body as Json).command_status, 'SUCCEEDED');
  });
});
