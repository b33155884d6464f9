// The command journal: what the executor and the step skeleton write to state_dir while an
// async command runs, on disk before each call returns, and gone when the command ends normally.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { CommandExecutor, defineCommand, JournalFile, type CommandContext } from '../../src/commands/index.ts';
import { runPhasedStep } from '../../src/deploy/phased-step.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createStateStore, STATE_FILES } from '../../src/state/index.ts';
import { tempDir } from '../agent/harness.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';

type Json = Record<string, any>;

function gate() {
  let release!: (value: unknown) => void;
  const promise = new Promise<unknown>((resolve) => { release = resolve; });
  return { promise, release };
}

async function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'journal-');
  const store = createStateStore(dir);
  const journal = new JournalFile(store, createSilentLogger());
  const executor = new CommandExecutor({ log: createSilentLogger(), journal });
  const read = async (): Promise<Json | undefined> => {
    const text = await readFile(join(dir, STATE_FILES.journal), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : JSON.parse(text) as Json;
  };
  return { dir, store, journal, executor, read };
}

describe('command journal', () => {
  it('holds the running async command, with what its step skeleton records, until it ends', async (t) => {
    const { executor, read } = await setup(t);
    const g = gate();
    let seen: Json | undefined;
    executor.register([defineCommand({
      name: 'deploy.execute_deploy_step', mode: 'async', params: z.object({}).strict(),
      run: async (_p, ctx) => runPhasedStep({ label: 'test step', step: 'test', firstPhase: 'disk' as string, ctx, runner: createFakeRunner() }, async (run) => {
        ctx.journal?.record({ step: { interface: 'deploy', step: 'test' } });
        run.useDisk('/dev/vdz');
        run.recordContainers('bootc-agent-install-01', 'bootc-agent-probe-01');
        run.enter('install', 'installing');
        run.markWritten();
        seen = await read();
        await g.promise;
        return 'done';
      }),
    })]);
    const { result } = executor.execute('deploy.execute_deploy_step', {});
    // On disk before the reply that says RUNNING.
    assert.equal((await read())?.id, result.id);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.ok(seen, 'the step ran');
    assert.equal(seen.id, result.id);
    assert.equal(seen.command, 'deploy.execute_deploy_step');
    assert.deepEqual(seen.step, { interface: 'deploy', step: 'test' });
    assert.equal(seen.phase, 'install');
    assert.equal(seen.device, '/dev/vdz');
    assert.equal(seen.written, true);
    assert.deepEqual(seen.containers, ['bootc-agent-install-01', 'bootc-agent-probe-01']);
    assert.match(seen.started_at, /^\d{4}-\d\d-\d\dT/);
    g.release(undefined);
    assert.equal((await executor.wait(result.id)).command_status, 'SUCCEEDED');
    assert.equal(await read(), undefined, 'a command that ended normally leaves no journal');
  });

  it('removes the entry of a command that failed on its own, and never journals sync commands', async (t) => {
    const { executor, read, dir } = await setup(t);
    executor.register([
      defineCommand({ name: 'test.boom', mode: 'async', params: z.object({}).strict(), run: async () => { throw new Error('kaboom'); } }),
      defineCommand({ name: 'test.echo', mode: 'sync', params: z.object({}).strict(), run: async (_p, ctx) => String(ctx.journal === undefined) }),
    ]);
    const failed = await executor.wait(executor.execute('test.boom', {}).result.id);
    assert.equal(failed.command_status, 'FAILED');
    assert.equal(await read(), undefined);
    const echoed = await executor.wait(executor.execute('test.echo', {}).result.id);
    assert.deepEqual(echoed.command_result, { result: 'true' });
    assert.deepEqual((await readdir(dir)).filter((f) => f !== 'agent.log'), []);
  });

  it('keeps the entry of a command the agent stopped, naming why, and refuses commands from then on', async (t) => {
    const { executor, read } = await setup(t);
    let cleanedUp = false;
    executor.register([defineCommand({
      name: 'test.wait', mode: 'async', params: z.object({}).strict(),
      run: (_p, ctx: CommandContext) => new Promise((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => { cleanedUp = true; reject(ctx.signal.reason); }, { once: true });
      }),
    })]);
    const { result } = executor.execute('test.wait', {});
    await new Promise((r) => setImmediate(r));
    await executor.abortRunning('the agent stopped on SIGTERM');
    assert.equal(cleanedUp, true, 'the command was cancelled through its signal');
    const final = executor.get(result.id);
    assert.equal(final.command_status, 'FAILED');
    assert.match(final.command_error!.details, /^\[CANCELLED\] the agent stopped on SIGTERM/);
    const entry = await read();
    assert.equal(entry?.id, result.id);
    assert.equal(entry?.stopped, 'the agent stopped on SIGTERM');
    assert.throws(() => executor.execute('test.wait', {}), { code: 'AGENT_BUSY', message: 'Agent is busy: the agent is stopping' });
  });

  it('refuses to start a command whose entry cannot be written', async () => {
    const failing = { readJournal: async () => undefined, writeJournal: () => { throw new Error('ENOSPC'); }, removeJournal: () => undefined };
    const executor = new CommandExecutor({ log: createSilentLogger(), journal: new JournalFile(failing, createSilentLogger()) });
    let ran = false;
    executor.register([defineCommand({ name: 'test.slow', mode: 'async', params: z.object({}).strict(), run: async () => { ran = true; } })]);
    assert.throws(() => executor.execute('test.slow', {}), /ENOSPC/);
    await new Promise((r) => setImmediate(r));
    assert.equal(ran, false);
    assert.deepEqual(executor.list(), []);
  });

  it('reads back what a previous run left: nothing, an entry, or something unreadable', async (t) => {
    const { journal, store } = await setup(t);
    assert.deepEqual(await journal.leftOver(), { kind: 'none' });
    const entry = journal.begin('id-1', 'deploy.execute_deploy_step');
    entry.record({ phase: 'pull', containers: ['a'] });
    entry.record({ containers: ['a', 'b'], written: true });
    const left = await journal.leftOver();
    assert.equal(left.kind, 'entry');
    if (left.kind === 'entry') {
      assert.equal(left.entry.id, 'id-1');
      assert.deepEqual(left.entry.containers, ['a', 'b']);
      assert.equal(left.entry.written, true);
      assert.equal(left.entry.phase, 'pull');
    }
    store.writeJournal('{"id": ');
    assert.equal((await journal.leftOver()).kind, 'unreadable');
    store.writeJournal('{"id": "x"}');
    assert.match(JSON.stringify(await journal.leftOver()), /unreadable.*command/);
    journal.end();
    assert.deepEqual(await journal.leftOver(), { kind: 'none' });
  });
});
