/**
 * Runs one of the QEMU scripts (scripts/qemu-deploy-test, scripts/qemu-boot-test) from a test:
 * its output is echoed on stderr as it comes (the runner reports it as comments, so progress
 * shows while the test runs), its exit 77 (a prerequisite missing, `SKIP: <reason>`) skips the
 * test with that reason, any other non-zero exit fails it with the output's tail.
 * @module
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The script's whole output, or undefined when it skipped the test. */
export async function runQemuScript(t: TestContext, script: string, args: string[], tailLines = 80): Promise<string | undefined> {
  const output: string[] = [];
  const code = await new Promise<number | null>((resolveRun) => {
    const child = spawn(resolve(ROOT, script), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const s of [child.stdout, child.stderr]) {
      s.on('data', (d: Buffer) => {
        const text = d.toString();
        output.push(text);
        process.stderr.write(text);
      });
    }
    child.on('exit', (c) => resolveRun(c));
  });
  const text = output.join('');
  if (code === 77) {
    const why = /SKIP: (.*)/.exec(text)?.[1] ?? 'prerequisites missing';
    console.log(`${script} skipped: ${why}`);
    t.skip(why);
    return undefined;
  }
  assert.equal(code, 0, `${script} ${args.join(' ')} failed:\n${text.split('\n').slice(-tailLines).join('\n')}`);
  return text;
}
