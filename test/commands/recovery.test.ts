// Recovery after a restart: the journal entry of the command the previous run was killed in
// becomes a FAILED result (COMMAND_INTERRUPTED) under its original id, after its containers are
// removed by name, its disk wiped if it was written, and state_dir's temporary files removed.
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { JournalFile, recoverInterruptedCommand } from '../../src/commands/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createStateStore } from '../../src/state/index.ts';
import { tempDir } from '../agent/harness.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';
import { KILLED_MID_INSTALL, recoveryAnswers } from '../helpers/interrupted-install.ts';

type Json = Record<string, any>;

async function setup(t: Parameters<typeof tempDir>[0], entry?: Record<string, unknown>) {
  const stateDir = await tempDir(t, 'recovery-');
  const store = createStateStore(stateDir);
  const journal = new JournalFile(store, createSilentLogger());
  if (entry) store.writeJournal(JSON.stringify(entry));
  return { stateDir, store, journal };
}

describe('recovery of an interrupted command', () => {
  it('does nothing without a journal', async (t) => {
    const { stateDir, journal } = await setup(t);
    const runner = createFakeRunner();
    assert.equal(await recoverInterruptedCommand({ runner, log: createSilentLogger(), journal, stateDir }), undefined);
    assert.deepEqual(runner.calls, []);
  });

  it('removes the containers by name, wipes the written disk and the temporary files, and reports FAILED under the original id', async (t) => {
    const { stateDir, journal } = await setup(t, KILLED_MID_INSTALL);
    await mkdir(join(stateDir, 'secrets', 'pull-x'), { recursive: true });
    await mkdir(join(stateDir, 'inject-abc'));
    await writeFile(join(stateDir, 'inject-abc', 'authorized_keys'), 'ssh-ed25519 AAAA');
    await writeFile(join(stateDir, '.node.json.123.abcd.tmp'), '{');
    await mkdir(join(stateDir, 'logs'));
    await writeFile(join(stateDir, 'logs', 'agent.log'), '');
    await writeFile(join(stateDir, 'token'), 'x'.repeat(43));
    const runner = createFakeRunner(recoveryAnswers());
    const result = await recoverInterruptedCommand({ runner, log: createSilentLogger(), journal, stateDir, keep: [join(stateDir, 'logs', 'agent.log')] });

    assert.ok(result);
    assert.equal(result.id, KILLED_MID_INSTALL.id);
    assert.equal(result.command_name, 'execute_deploy_step');
    assert.equal(result.command_status, 'FAILED');
    assert.equal(result.command_result, null);
    const error = result.command_error!;
    assert.equal(error.type, 'CommandExecutionError');
    assert.equal(error.code, 500);
    assert.equal(error.message, 'Command execute_deploy_step (deploy step execute_bootc_install) was interrupted in phase install: the agent was killed or crashed and started again');
    assert.match(error.details, /^\[COMMAND_INTERRUPTED\] /);
    assert.match(error.details, /phase=install; device=\/dev\/vda; disk_written=true/);
    assert.match(error.details, /cleanup=\{"containers":\["bootc-agent-install-0a1b2c3d4e","bootc-agent-probe-0a1b2c3d4e"\],"disk":"wiped","temporary":\[/);

    const lines = runner.commandLines();
    assert.equal(lines[0], 'podman rm --force --ignore --time 0 -- bootc-agent-install-0a1b2c3d4e bootc-agent-probe-0a1b2c3d4e');
    assert.ok(!lines.some((l) => /podman .*(--all|-a\b)/.test(l)), 'never every container');
    assert.ok(lines.includes('wipefs --force --all -- /dev/vda'));
    assert.ok(lines.includes('sgdisk --zap-all -- /dev/vda'));
    // The containers are gone before the disk is touched.
    assert.ok(lines.findIndex((l) => l.startsWith('wipefs')) > lines.findIndex((l) => l.startsWith('podman container exists')));
    assert.deepEqual((await readdir(stateDir)).sort(), ['logs', 'token']);
    assert.deepEqual(await journal.leftOver(), { kind: 'none' });
  });

  it('leaves a disk the command had only chosen as it was', async (t) => {
    const { stateDir, journal } = await setup(t, { ...KILLED_MID_INSTALL, phase: 'pull', written: false, containers: [] });
    const runner = createFakeRunner();
    const result = await recoverInterruptedCommand({ runner, log: createSilentLogger(), journal, stateDir });
    assert.match(result!.command_error!.details, /phase=pull; device=\/dev\/vda; disk_written=false/);
    assert.match(result!.command_error!.details, /"disk":"not written"/);
    assert.deepEqual(runner.calls, []);
  });

  it('names a stop the agent recorded, and a clean step without a disk', async (t) => {
    const { stateDir, journal } = await setup(t, {
      id: 'c-1', command: 'clean.execute_clean_step', started_at: '2026-12-06T01:00:00.000Z',
      step: { interface: 'clean', step: 'erase_devices_metadata' }, stopped: 'the agent stopped on SIGTERM',
    });
    const result = await recoverInterruptedCommand({ runner: createFakeRunner(), log: createSilentLogger(), journal, stateDir });
    assert.equal(result!.command_name, 'execute_clean_step');
    assert.equal(result!.command_error!.message, 'Command execute_clean_step (clean step erase_devices_metadata) was interrupted: the agent stopped on SIGTERM');
    assert.match(result!.command_error!.details, /"disk":"no disk chosen"/);
  });

  it('reports containers it could not remove, and still wipes the disk', async (t) => {
    const { stateDir, journal } = await setup(t, KILLED_MID_INSTALL);
    const runner = createFakeRunner(recoveryAnswers({ containerSurvives: true }));
    const result = await recoverInterruptedCommand({ runner, log: createSilentLogger(), journal, stateDir, retryDelayMs: 1 });
    const details = result!.command_error!.details;
    assert.match(details, /"containers":"still present: bootc-agent-install-0a1b2c3d4e, bootc-agent-probe-0a1b2c3d4e"/);
    assert.match(details, /"disk":"wiped"/);
    assert.equal(runner.commandLines().filter((l) => l.startsWith('podman rm')).length, 3);
  });

  it('drops an unreadable journal after removing the temporary files, reporting nothing', async (t) => {
    const { stateDir, store, journal } = await setup(t);
    store.writeJournal('{"id": 1');
    await mkdir(join(stateDir, 'inject-x'));
    const json: Json | undefined = await recoverInterruptedCommand({ runner: createFakeRunner(), log: createSilentLogger(), journal, stateDir });
    assert.equal(json, undefined);
    assert.deepEqual(await readdir(stateDir), []);
  });

  // Issue 14's disk mode: the containers live in the scratch's store, and the scratch (a loop
  // device on the disk, mounted below its private directory) must go before the disk is wiped.
  it('in disk mode removes the containers from the scratch store, then erases and detaches the scratch before the wipe', async (t) => {
    const scratchDir = await tempDir(t, 'scratch-');
    const store = ['--root', `${scratchDir}/mnt/containers/storage`, '--runroot', `${scratchDir}/run/storage`, '--tmpdir', `${scratchDir}/run/libpod`];
    const { stateDir, journal } = await setup(t, { ...KILLED_MID_INSTALL, store_args: store, scratch_dir: scratchDir });
    const runner = createFakeRunner([
      ...recoveryAnswers().map((a) => ({ ...a, argv: (argv: readonly string[]) => (typeof a.argv === 'function' ? a.argv(argv[0] === 'podman' ? ['podman', ...argv.slice(1 + store.length)] : argv) : false) })),
      { argv: (a) => a[0] === 'losetup' && a.includes('--associated'), stdout: '/dev/loop7\n', times: Infinity },
      { argv: (a) => (a[0] === 'losetup' && a[1] === '-d') || (a[0] === 'wipefs' && a.includes('/dev/loop7')), times: Infinity },
    ]);
    const result = await recoverInterruptedCommand({ runner, log: createSilentLogger(), journal, stateDir });
    assert.equal(result?.command_status, 'FAILED');
    const lines = runner.commandLines();
    assert.equal(lines[0], `podman ${store.join(' ')} rm --force --ignore --time 0 -- bootc-agent-install-0a1b2c3d4e bootc-agent-probe-0a1b2c3d4e`);
    const erase = lines.indexOf('wipefs -a -q /dev/loop7');
    const detach = lines.indexOf('losetup -d /dev/loop7');
    const wipe = lines.indexOf('sgdisk --zap-all -- /dev/vda');
    assert.ok(erase > 0 && detach > erase && wipe > detach, lines.join('\n'));
    assert.match(result!.command_error!.details, /"scratch":\{"steps":\["wipefs -a \/dev\/loop7","losetup -d \/dev\/loop7","rm -r [^"]+"\],"failures":\[\]\}/);
    assert.equal((await readdir(join(scratchDir, '..'))).includes(scratchDir.split('/').pop()!), false, 'the scratch directory is gone');
  });
});
