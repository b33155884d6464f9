/**
 * Test fixtures for the config drive: real ISO and FAT images built with genisoimage and
 * mtools, and a scripted command runner that fails on any command it was not told to expect.
 * @module
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { CommandFailedError } from '../../src/errors.ts';
import type { CommandRunner, RunOptions, RunResult } from '../../src/exec/index.ts';

export const META_DATA = { uuid: '0b3f2c4e-1111-4d4d-9999-abcdefabcdef', name: 'node-0' };

export function tempDir(t: TestContext, prefix = 'configdrive-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeTree(root: string, files: Record<string, string | Buffer>): void {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
}

export function defaultFiles(meta: object = META_DATA): Record<string, string> {
  return {
    'openstack/latest/meta_data.json': JSON.stringify(meta),
    'openstack/latest/user_data': '#cloud-config\nhostname: node-0\n',
    'openstack/latest/network_data.json': '{"links":[],"networks":[],"services":[]}',
  };
}

/** An ISO like Ironic's (`genisoimage -J -r -V config-2`), returned as bytes. */
export function buildIso(dir: string, options: { label?: string; files?: Record<string, string | Buffer> } = {}): Buffer {
  const tree = mkdtempSync(join(dir, 'tree-'));
  writeTree(tree, options.files ?? defaultFiles());
  const out = join(dir, `cd-${Math.random().toString(36).slice(2)}.iso`);
  execFileSync('genisoimage', ['-quiet', '-o', out, '-J', '-r', '-V', options.label ?? 'config-2', tree]);
  return readFileSync(out);
}

/** A FAT image made with mkfs.vfat and filled with mcopy. */
export function buildFat(dir: string, options: { label?: string; files?: Record<string, string> } = {}): Buffer {
  const tree = mkdtempSync(join(dir, 'fat-tree-'));
  writeTree(tree, options.files ?? defaultFiles());
  const out = join(dir, `fat-${Math.random().toString(36).slice(2)}.img`);
  execFileSync('mkfs.vfat', ['-C', '-n', options.label ?? 'CONFIG-2', out, '4096'], { stdio: 'ignore' });
  execFileSync('mcopy', ['-s', '-i', out, join(tree, 'openstack'), '::/'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  return readFileSync(out);
}

export { hasCommand } from '../helpers/tools.ts';

export interface Expectation {
  /** Exact argv; a RegExp entry matches a generated value (a random UUID). */
  argv: ReadonlyArray<string | RegExp>;
  stdout?: string | (() => string);
  stderr?: string;
  exitCode?: number;
  /** Throw this instead of returning. */
  error?: Error;
  /** Run a side effect (e.g. remember a generated UUID, mark a node as present). */
  effect?: (argv: readonly string[], options: RunOptions) => void;
}

export interface FakeRunner extends CommandRunner {
  calls: string[][];
  /** Assert every expected command ran. */
  done(): void;
}

/** Commands must come in the scripted order with the exact argv. */
export function createFakeRunner(script: Expectation[]): FakeRunner {
  const queue = [...script];
  const calls: string[][] = [];
  const mismatches: Error[] = [];
  return {
    calls,
    done() {
      if (mismatches[0]) throw mismatches[0];
      assert.deepEqual(queue.map((e) => e.argv.join(' ')), [], 'expected commands that never ran');
    },
    async run(file, args, options = {}): Promise<RunResult> {
      const argv = [file, ...args];
      calls.push(argv);
      const next = queue.shift();
      try {
        assert.ok(next, `unexpected command: ${argv.join(' ')}`);
        assert.equal(argv.length, next.argv.length, `argv ${argv.join(' ')} vs ${next.argv.join(' ')}`);
        next.argv.forEach((want, i) => {
          if (typeof want === 'string') assert.equal(argv[i], want, `argv[${i}] of ${argv.join(' ')}`);
          else assert.match(argv[i] ?? '', want, `argv[${i}] of ${argv.join(' ')}`);
        });
      } catch (err) {
        // Code under test may tolerate failures of some commands: done() still reports this.
        mismatches.push(err as Error);
        throw err;
      }
      next.effect?.(argv, options);
      if (next.error) throw next.error;
      const exitCode = next.exitCode ?? 0;
      if (!(options.okExitCodes ?? [0]).includes(exitCode)) {
        throw new CommandFailedError('COMMAND_FAILED', argv, exitCode, next.stderr ?? '');
      }
      const stdout = typeof next.stdout === 'function' ? next.stdout() : next.stdout ?? '';
      return { argv, exitCode, stdout, stderr: next.stderr ?? '', durationMs: 1 };
    },
  };
}

export function notInstalled(argv: readonly string[]): Error {
  return new CommandFailedError('COMMAND_NOT_FOUND', argv, undefined, '');
}
