import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { CommandExecutor, defineCommand } from '../../src/commands/index.ts';
import { AgentError } from '../../src/errors.ts';
import { createSilentLogger } from '../../src/log/index.ts';

// A command that runs until released, so tests control when it finishes.
function gate() {
  let release!: (value: unknown) => void;
  let fail!: (err: unknown) => void;
  const promise = new Promise<unknown>((res, rej) => { release = res; fail = rej; });
  return { promise, release, fail };
}

function setup() {
  const finished: string[] = [];
  const executor = new CommandExecutor({ log: createSilentLogger(), onFinished: (r) => finished.push(`${r.command_name}:${r.command_status}`) });
  const g = gate();
  executor.register([
    defineCommand({ name: 'test.slow', mode: 'async', params: z.object({}).strict(), run: () => g.promise }),
    defineCommand({ name: 'test.echo', mode: 'sync', params: z.object({ value: z.string() }).strict(), run: async (p) => p.value }),
    defineCommand({ name: 'test.dict', mode: 'async', params: z.object({}).strict(), run: async () => ({ a: 1 }) }),
    defineCommand({ name: 'test.boom', mode: 'sync', params: z.object({}).strict(), run: async () => { throw new Error('kaboom'); } }),
    defineCommand({ name: 'test.mismatch', mode: 'async', params: z.object({}).strict(), run: async () => { throw new AgentError('VERSION_MISMATCH', 'versions differ'); } }),
    defineCommand({
      name: 'test.progress', mode: 'async', params: z.object({}).strict(),
      run: async (_p, ctx) => { ctx.reportProgress({ phase: 'pull', message: 'pulling', bytes_done: 1, bytes_total: 2 }); return g.promise; },
    }),
  ]);
  return { executor, gate: g, finished };
}

describe('CommandExecutor', () => {
  it('runs an async command: RUNNING, then SUCCEEDED with "<method>: <string>"', async () => {
    const { executor, gate: g, finished } = setup();
    const { result, sync } = executor.execute('test.slow', {});
    assert.equal(sync, false);
    assert.deepEqual(Object.keys(result), ['id', 'command_name', 'command_status', 'command_error', 'command_result']);
    assert.equal(result.command_name, 'slow');
    assert.equal(result.command_status, 'RUNNING');
    assert.equal(result.command_error, null);
    g.release('done');
    const final = await executor.wait(result.id);
    assert.equal(final.command_status, 'SUCCEEDED');
    assert.deepEqual(final.command_result, { result: 'slow: done' });
    assert.deepEqual(finished, ['slow:SUCCEEDED']);
  });

  it('wraps sync string results as {result} without the method prefix', async () => {
    const { executor } = setup();
    const { result, sync } = executor.execute('test.echo', { value: 'hi' });
    assert.equal(sync, true);
    assert.deepEqual((await executor.wait(result.id)).command_result, { result: 'hi' });
  });

  it('passes dict results through unchanged', async () => {
    const { executor } = setup();
    const { result } = executor.execute('test.dict', {});
    assert.deepEqual((await executor.wait(result.id)).command_result, { a: 1 });
  });

  it('refuses a second command while one runs (409 AGENT_BUSY naming the running one)', async () => {
    const { executor, gate: g } = setup();
    const { result } = executor.execute('test.slow', {});
    assert.throws(() => executor.execute('test.echo', { value: 'x' }), (err: AgentError) => {
      assert.equal(err.code, 'AGENT_BUSY');
      assert.equal(err.status, 409);
      assert.equal(err.message, 'Agent is busy: executing command slow');
      return true;
    });
    g.release('ok');
    await executor.wait(result.id);
    assert.equal(executor.list().length, 1, 'a refused command is not recorded');
  });

  it('records failures as FAILED with an IPA error object', async () => {
    const { executor } = setup();
    const { result } = executor.execute('test.boom', {});
    const final = await executor.wait(result.id);
    assert.equal(final.command_status, 'FAILED');
    assert.equal(final.command_result, null);
    assert.deepEqual(Object.keys(final.command_error!), ['type', 'code', 'message', 'details']);
    assert.equal(final.command_error!.type, 'CommandExecutionError');
    assert.equal(final.command_error!.code, 500);
    assert.match(final.command_error!.details, /INTERNAL.*kaboom/);
  });

  it('reports a version mismatch as CLEAN_VERSION_MISMATCH', async () => {
    const { executor } = setup();
    const { result } = executor.execute('test.mismatch', {});
    const final = await executor.wait(result.id);
    assert.equal(final.command_status, 'CLEAN_VERSION_MISMATCH');
    assert.equal(final.command_error!.type, 'VersionMismatch');
  });

  it('shows progress in command_result while RUNNING, then the real result', async () => {
    const { executor, gate: g } = setup();
    const { result } = executor.execute('test.progress', {});
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const running = executor.get(result.id);
    assert.equal(running.command_status, 'RUNNING');
    const progress = (running.command_result as { progress: Record<string, unknown> }).progress;
    assert.equal(progress.phase, 'pull');
    assert.equal(progress.bytes_total, 2);
    assert.equal(executor.current()?.name, 'test.progress');
    g.release({ ok: true });
    assert.deepEqual((await executor.wait(result.id)).command_result, { ok: true });
    assert.equal(executor.current(), undefined);
  });

  const badCalls: Array<[string, unknown, unknown, string, number]> = [
    ['a name without a dot', 'nodot', {}, 'INVALID_COMMAND', 400],
    ['a non-string name', 42, {}, 'INVALID_COMMAND', 400],
    ['an unknown extension', 'nope.run', {}, 'NOT_FOUND', 404],
    ['an unknown command', 'test.nope', {}, 'INVALID_COMMAND', 400],
    ['a missing param', 'test.echo', {}, 'INVALID_PARAMS', 400],
    ['a param of the wrong type', 'test.echo', { value: 1 }, 'INVALID_PARAMS', 400],
    ['an extra param', 'test.echo', { value: 'a', extra: 1 }, 'INVALID_PARAMS', 400],
  ];
  for (const [what, name, params, code, status] of badCalls) {
    it(`rejects ${what} with ${code}`, () => {
      const { executor } = setup();
      assert.throws(() => executor.execute(name, params), (err: AgentError) => err.code === code && err.status === status);
      assert.equal(executor.list().length, 0);
    });
  }

  it('answers 404 for an unknown id', async () => {
    const { executor } = setup();
    assert.throws(() => executor.get('nope'), (err: AgentError) => err.code === 'NOT_FOUND');
    await assert.rejects(executor.wait('nope'), (err: AgentError) => err.code === 'NOT_FOUND');
  });

  it('keeps results in execution order', async () => {
    const { executor } = setup();
    for (const value of ['a', 'b', 'c']) await executor.wait(executor.execute('test.echo', { value }).result.id);
    assert.deepEqual(executor.list().map((r) => (r.command_result as { result: string }).result), ['a', 'b', 'c']);
  });

  it('cancels the running command on abortRunning', async () => {
    const executor = new CommandExecutor({ log: createSilentLogger() });
    executor.register([defineCommand({
      name: 'test.wait', mode: 'async', params: z.object({}).strict(),
      run: (_p, ctx) => new Promise((_res, rej) => ctx.signal.addEventListener('abort', () => rej(ctx.signal.reason), { once: true })),
    })]);
    const { result } = executor.execute('test.wait', {});
    await new Promise((r) => setImmediate(r));
    await executor.abortRunning('agent shutting down');
    const final = executor.get(result.id);
    assert.equal(final.command_status, 'FAILED');
    assert.match(final.command_error!.details, /CANCELLED.*agent shutting down/);
  });
});
