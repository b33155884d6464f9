/**
 * The agent as the benchmarks run it: the bundle `node dist/bootc-agent.mjs`, rebuilt first
 * when it is missing or older than src/ (kept as it is if the rebuild fails because another
 * change is mid-edit), with `node --import tsx src/main.ts` as the fallback.
 * @module
 */
import { readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, run, Skip, type BenchContext } from './common.ts';

export const BUNDLE = join(ROOT, 'dist/bootc-agent.mjs');

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestMtime(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/** Makes sure dist/ is current; returns a one-line note on what it did. */
export async function ensureBundle(ctx: BenchContext): Promise<string> {
  const built = await stat(BUNDLE).then((s) => s.mtimeMs).catch(() => 0);
  const srcNewest = await newestMtime(join(ROOT, 'src'));
  if (!ctx.options.build && built >= srcNewest) return 'dist/bootc-agent.mjs is up to date';
  const r = await run(process.execPath, [join(ROOT, 'scripts/build.mjs')], { cwd: ROOT, allowFail: true });
  if (r.code === 0) return `dist/ was older than src/: ${r.stdout.trim()}`;
  if (built) return `rebuild FAILED (src mid-edit?), using the existing dist: ${r.stderr.trim().split('\n')[0]}`;
  throw new Skip(`dist/bootc-agent.mjs missing and npm run build failed: ${r.stderr.trim().split('\n')[0]}`);
}

export const UNIT_FILE = join(ROOT, 'rootfs/etc/systemd/system/bootc-agent.service');

// The ramdisk's unit file; '' if it cannot be read (the agent then runs with plain node).
function unitText(): string {
  try {
    return readFileSync(UNIT_FILE, 'utf8');
  } catch {
    return '';
  }
}

/**
 * The node options the ramdisk's unit starts the agent with (its `ExecStart=/usr/bin/node
 * OPTIONS… /usr/lib/bootc-agent/bootc-agent.mjs`), so the benchmarks measure the agent the
 * way it runs on a node.
 */
function ramdiskNodeOptions(unit: string): string[] {
  const line = /^ExecStart=\S*node\s+(.*)$/m.exec(unit)?.[1] ?? '';
  const options: string[] = [];
  for (const word of line.trim().split(/\s+/)) {
    if (!word.startsWith('--')) break;
    options.push(word);
  }
  return options;
}

/**
 * The environment the ramdisk's unit gives the agent (its `Environment=` lines: NODE_ENV,
 * MALLOC_ARENA_MAX), as `KEY=VALUE` words.
 */
function ramdiskEnvironment(unit: string): string[] {
  return [...unit.matchAll(/^Environment=(.*)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/)).filter((w) => /^[A-Z_][A-Z0-9_]*=\S*$/.test(w));
}

/**
 * `env KEY=VALUE… node OPTIONS…`: node as the ramdisk's unit starts it (env execs node: same
 * PID); plain node if the unit cannot be read.
 */
export function ramdiskNode(): string[] {
  const unit = unitText();
  const env = ramdiskEnvironment(unit);
  return [...(env.length ? ['env', ...env] : []), process.execPath, ...ramdiskNodeOptions(unit)];
}

/** argv prefix that runs the agent's `fetch` subcommand: the bundle if it has it, else tsx. */
export async function fetchCommandPrefix(ctx: BenchContext): Promise<{ argv: string[]; note: string }> {
  const note = await ensureBundle(ctx).catch((err: unknown) => `no bundle: ${(err as Error).message}`);
  const bundle = [...ramdiskNode(), BUNDLE, 'fetch'];
  if ((await run(bundle[0]!, [...bundle.slice(1), '--help'], { allowFail: true }).catch(() => undefined))?.code === 0) return { argv: bundle, note };
  const tsx = [process.execPath, '--import', 'tsx', join(ROOT, 'src/main.ts'), 'fetch'];
  const r = await run(tsx[0]!, [...tsx.slice(1), '--help'], { cwd: ROOT, allowFail: true }).catch(() => undefined);
  if (r?.code === 0) return { argv: tsx, note: `${note}; the bundle has no fetch subcommand: using tsx src/main.ts` };
  throw new Skip('the agent has no `fetch` subcommand yet (src/cli/fetch.ts, src/image/)');
}
