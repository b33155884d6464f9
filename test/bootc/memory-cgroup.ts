/**
 * A memory cgroup around the podman processes of a deploy, for test/bootc/memory-bound and
 * `npm run bench -- --only=storage`: `<name>/podman` holds every podman the step runs (a shell
 * writes itself to cgroup.procs, then execs podman) and `<name>/containers` is the containers'
 * `--cgroup-parent`, so conmon, runc and what runs in the containers (bootc) are charged too.
 * cgroup v2 (memory.max, memory.peak, memory.events) or v1's memory hierarchy
 * (memory.limit_in_bytes, memory.max_usage_in_bytes, memory.failcnt). Creates and removes only
 * its own directories (in v1 also the ones podman made under the same path in other hierarchies).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandRunner } from '../../src/exec/index.ts';

export interface MemoryCgroup {
  version: 1 | 2;
  /** Path below the hierarchy's root. */
  name: string;
  dir: string;
  /** Where the podman processes go. */
  procsFile: string;
  /** podman's --cgroup-parent for the containers. */
  containersParent: string;
  /** Peak charge in bytes, page cache included (v2 memory.peak, v1 memory.max_usage_in_bytes), and the processes the OOM killer killed in it. */
  peak(): { peakBytes: number | undefined; oomKills: number };
  /**
   * What cannot be reclaimed now: anonymous memory and shmem (tmpfs, such as an in-memory
   * container storage), without the page cache the kernel can write back and drop.
   */
  unreclaimableBytes(): number;
  reset(): void;
  remove(): void;
}

export function memoryCgroupUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const v2 = '/sys/fs/cgroup/cgroup.controllers';
  if (existsSync(v2)) return readFileSync(v2, 'utf8').split(/\s+/).includes('memory') ? undefined : 'cgroup v2 without the memory controller';
  return existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') ? undefined : 'no memory cgroup controller (neither cgroup v2 with memory nor v1\'s memory hierarchy)';
}

function readNumber(file: string): number | undefined {
  try {
    const v = readFileSync(file, 'utf8').trim();
    return v === 'max' ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

function stat(file: string, keys: string[]): number {
  const text = readFileSync(file, 'utf8');
  return keys.reduce((sum, k) => sum + Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(text)?.[1] ?? 0), 0);
}

/** rmdir of `dir` and every cgroup below it, deepest first (a cgroup directory holds only kernel files). */
function removeCgroupTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const failed: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) failed.push(...removeCgroupTree(join(dir, e.name)));
  try {
    rmdirSync(dir);
  } catch (err) {
    failed.push(`${dir}: ${(err as Error).message}`);
  }
  return failed;
}

function throwIfFailed(failed: string[]): void {
  if (failed.length) throw new Error(`cgroup not removed: ${failed.join('; ')}`);
}

/** `limitBytes` undefined: no limit, for measuring. */
export function createMemoryCgroup(label: string, limitBytes?: number): MemoryCgroup {
  const name = `bootc-agent-${label}-${process.pid}`;
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const dir = join('/sys/fs/cgroup', name);
    const root = readFileSync('/sys/fs/cgroup/cgroup.subtree_control', 'utf8');
    if (!root.split(/\s+/).includes('memory')) writeFileSync('/sys/fs/cgroup/cgroup.subtree_control', '+memory');
    mkdirSync(dir);
    if (limitBytes !== undefined) {
      writeFileSync(join(dir, 'memory.max'), String(limitBytes));
      if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
    }
    // no process in `dir` itself: v2 lets only leaves hold processes once children use controllers
    writeFileSync(join(dir, 'cgroup.subtree_control'), '+memory');
    mkdirSync(join(dir, 'podman'));
    mkdirSync(join(dir, 'containers'));
    return {
      version: 2, name, dir, procsFile: join(dir, 'podman/cgroup.procs'), containersParent: `/${name}/containers`,
      peak: () => ({ peakBytes: readNumber(join(dir, 'memory.peak')), oomKills: stat(join(dir, 'memory.events'), ['oom_kill']) }),
      unreclaimableBytes: () => stat(join(dir, 'memory.stat'), ['anon', 'shmem']),
      reset: () => { try { writeFileSync(join(dir, 'memory.peak'), '0'); } catch { /* kernels before 6.12 cannot reset it */ } },
      remove: () => throwIfFailed(removeCgroupTree(dir)),
    };
  }
  // v1: podman makes the containers' cgroups in every hierarchy under the same parent path.
  const dir = join('/sys/fs/cgroup/memory', name);
  mkdirSync(dir);
  if (limitBytes !== undefined) {
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) writeFileSync(join(dir, 'memory.memsw.limit_in_bytes'), String(limitBytes));
  }
  mkdirSync(join(dir, 'podman'));
  mkdirSync(join(dir, 'containers'));
  return {
    version: 1, name, dir, procsFile: join(dir, 'podman/cgroup.procs'), containersParent: `/${name}/containers`,
    peak: () => ({ peakBytes: readNumber(join(dir, 'memory.max_usage_in_bytes')), oomKills: stat(join(dir, 'memory.oom_control'), ['oom_kill']) }),
    unreclaimableBytes: () => stat(join(dir, 'memory.stat'), ['total_rss', 'total_shmem']),
    reset: () => writeFileSync(join(dir, 'memory.max_usage_in_bytes'), '0'),
    remove: () => throwIfFailed(readdirSync('/sys/fs/cgroup').flatMap((h) => removeCgroupTree(join('/sys/fs/cgroup', h, name)))),
  };
}

/**
 * The step's runner with every podman started inside the cgroup and every container under it.
 * The argv is the step's own plus `--cgroup-parent` for `podman run`; `env` is added to podman's.
 */
export function podmanInCgroup(base: CommandRunner, cg: MemoryCgroup, env: Record<string, string> = {}): CommandRunner {
  return {
    run(file, args, opts) {
      if (file !== 'podman') return base.run(file, args, opts);
      const argv = [...args];
      const runAt = argv.indexOf('run');
      if (runAt >= 0) argv.splice(runAt + 1, 0, '--cgroup-parent', cg.containersParent);
      return base.run('/bin/sh', ['-c', `echo $$ > ${cg.procsFile} && exec podman "$@"`, 'podman', ...argv], { ...opts, env: { ...opts?.env, ...env } });
    },
  };
}
