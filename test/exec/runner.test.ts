/**
 * The real command runner (node:child_process) against real programs: output, exit codes,
 * stdin, environment, working directory, lines as they arrive, the bounded tail of a stream read
 * line by line, too much output, missing programs, timeouts, cancellation (SIGTERM, then SIGKILL
 * for a program that ignores it), death by a signal, and secrets kept out of errors.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommandFailedError } from '../../src/errors.ts';
import { createExecaRunner, LINE_TAIL_CHARS, MAX_OUTPUT_CHARS } from '../../src/exec/runner.ts';

const runner = createExecaRunner();

async function failure(p: Promise<unknown>): Promise<CommandFailedError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CommandFailedError, String(err));
    return err;
  }
  throw new Error('the command did not fail');
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('command runner', () => {
  test('stdout and stderr whole, exit code, duration', async () => {
    const r = await runner.run('sh', ['-c', 'printf "a\\nb"; printf "warn\\n" >&2']);
    assert.deepEqual([r.stdout, r.stderr, r.exitCode], ['a\nb', 'warn\n', 0]);
    assert.deepEqual(r.argv, ['sh', '-c', 'printf "a\\nb"; printf "warn\\n" >&2']);
    assert.ok(r.durationMs >= 0);
  });

  test('input goes to stdin; without input stdin is at its end at once', async () => {
    assert.equal((await runner.run('cat', [], { input: 'x\ny' })).stdout, 'x\ny');
    assert.equal((await runner.run('cat', [], { input: Buffer.from([0x41, 0x42]) })).stdout, 'AB');
    assert.equal((await runner.run('cat', [], { timeoutMs: 5000 })).stdout, '');
  });

  test('env is added to the agent\'s own; cwd is honoured', async () => {
    const r = await runner.run('sh', ['-c', 'echo "$H6_RUNNER_TEST:$PATH" && pwd'], { env: { H6_RUNNER_TEST: 'v' }, cwd: '/' });
    assert.equal(r.stdout, `v:${process.env.PATH}\n/\n`);
  });

  test('a non-zero exit is COMMAND_FAILED with the stderr tail, unless okExitCodes has it', async () => {
    const err = await failure(runner.run('sh', ['-c', 'echo out; echo "it broke" >&2; exit 3']));
    assert.equal(err.code, 'COMMAND_FAILED');
    assert.equal(err.exitCode, 3);
    assert.equal(err.stderrTail, 'it broke');
    assert.equal((await runner.run('sh', ['-c', 'exit 3'], { okExitCodes: [0, 3] })).exitCode, 3);
  });

  test('a missing program is COMMAND_NOT_FOUND', async () => {
    const err = await failure(runner.run('bootc-agent-no-such-program', ['x']));
    assert.equal(err.code, 'COMMAND_NOT_FOUND');
    assert.equal(err.exitCode, undefined);
  });

  test('lines arrive one by one without their \\n or \\r\\n, the last one without a newline too', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const r = await runner.run('sh', ['-c', 'printf "one\\r\\ntwo\\n\\nthree"; printf "e1\\ne2\\n" >&2'], { onStdoutLine: (l) => out.push(l), onStderrLine: (l) => err.push(l) });
    assert.deepEqual(out, ['one', 'two', '', 'three']);
    assert.deepEqual(err, ['e1', 'e2']);
    assert.equal(r.stdout, 'one\r\ntwo\n\nthree');
  });

  test('a stream read line by line keeps only its tail', async () => {
    let lines = 0;
    // 20,000 lines of 100 characters: 2 MB through the callback
    const r = await runner.run('sh', ['-c', 'i=0; line=$(printf "%099d" 0); while [ $i -lt 20000 ]; do echo "$line"; i=$((i+1)); done; echo end'], {
      onStdoutLine: () => { lines++; },
    });
    assert.equal(lines, 20001);
    assert.ok(r.stdout.length <= LINE_TAIL_CHARS, String(r.stdout.length));
    assert.ok(r.stdout.endsWith('0\nend\n'));
  });

  test('more output than MAX_OUTPUT_CHARS from a stream read whole: the program is stopped, COMMAND_FAILED', async () => {
    const err = await failure(runner.run('head', ['-c', String(MAX_OUTPUT_CHARS + 4 * 1024 * 1024), '/dev/zero']));
    assert.equal(err.code, 'COMMAND_FAILED');
    assert.match(err.message, /more than \d+ characters of output/);
  });

  test('a timeout is COMMAND_TIMEOUT and the program is gone', async () => {
    let pid = 0;
    const err = await failure(runner.run('sh', ['-c', 'echo $$; exec sleep 30'], { timeoutMs: 300, onStdoutLine: (l) => { pid = Number(l); } }));
    assert.equal(err.code, 'COMMAND_TIMEOUT');
    assert.equal(err.details.timeout_ms, 300);
    assert.ok(pid > 0 && !alive(pid), 'the program is still running');
  });

  test('cancelling: CANCELLED, SIGTERM first, SIGKILL 5 s later for a program that ignores it', async () => {
    const abort = new AbortController();
    let pid = 0;
    const started = performance.now();
    const running = runner.run('sh', ['-c', 'trap "" TERM; echo $$; while :; do sleep 0.1; done'], {
      signal: abort.signal,
      onStdoutLine: (l) => { pid = Number(l); abort.abort(new Error('stop')); },
    });
    const err = await failure(running);
    assert.equal(err.code, 'CANCELLED');
    assert.ok(performance.now() - started >= 4500, 'SIGKILL came before the 5 s grace');
    assert.ok(pid > 0 && !alive(pid), 'the program is still running');
    const already = new AbortController();
    already.abort(new Error('before'));
    assert.equal((await failure(runner.run('sleep', ['30'], { signal: already.signal }))).code, 'CANCELLED');
  });

  test('a program killed by a signal: COMMAND_FAILED naming the signal', async () => {
    const err = await failure(runner.run('sh', ['-c', 'kill -KILL $$']));
    assert.equal(err.code, 'COMMAND_FAILED');
    assert.equal(err.details.signal, 'SIGKILL');
  });

  test('secrets are masked in the argv and the tail of an error', async () => {
    const err = await failure(runner.run('sh', ['-c', 'echo "token s3cr3t-value refused" >&2; exit 1', 's3cr3t-value'], { secrets: ['s3cr3t-value'] }));
    assert.doesNotMatch(JSON.stringify({ m: err.message, d: err.details }), /s3cr3t-value/);
    assert.match(err.stderrTail, /token \*\*\* refused/);
  });
});
