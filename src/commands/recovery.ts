/**
 * After a restart, the command the previous run was killed in (SIGKILL, the OOM killer, a crash;
 * systemd's `Restart=` starts the agent again) or stopped during (SIGTERM: the step cleaned up,
 * and doing it again is harmless). Before the API listens, the agent removes that
 * command's containers, wipes its disk if it may have written it, removes the temporary files
 * under `state_dir`, and reports it FAILED (`COMMAND_INTERRUPTED`) under its original id: a
 * conductor reading the last command of the step sees it failed — not an empty list, which it
 * takes for a freshly booted agent and goes on — and one that retries gets a blank disk.
 * @module
 */
import { readdir, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeScratchLeftovers, wipeDisk } from '../disk/index.ts';
import { AgentError, describeError, toAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { toWireError } from './executor.ts';
import type { JournalEntry, JournalFile } from './journal.ts';
import type { WireCommandResult } from './types.ts';

export interface RecoveryDeps {
  runner: CommandRunner;
  log: Logger;
  journal: JournalFile;
  /** `state_dir`: its subdirectories hold the temporary files of the command that ran. */
  stateDir: string;
  /** Paths under `state_dir` that are not temporary (the agent log). */
  keep?: readonly string[];
  /** Pause between attempts to remove a container (tests shorten it). */
  retryDelayMs?: number;
}

/** What the recovery did, reported in the error's details. */
export interface RecoveryCleanup {
  /** The containers removed, or why they could not be. */
  containers: string[] | string;
  /** What was removed of a scratch area on the disk (disk mode), and what failed. */
  scratch?: { steps: string[]; failures: string[] };
  /** `wiped`, `not written`, `no disk chosen`, or why the wipe failed. */
  disk: string;
  /** Entries of `state_dir` removed. */
  temporary: string[];
}

/**
 * Cleans up after the command the journal names, if any, and returns its FAILED result for the
 * executor to hold; the journal is removed once the clean-up is done (a second kill during it
 * finds the entry again). Never throws for a failed clean-up step: the details say what failed.
 */
export async function recoverInterruptedCommand(deps: RecoveryDeps): Promise<WireCommandResult | undefined> {
  const left = await deps.journal.leftOver();
  if (left.kind === 'none') return undefined;
  const log = deps.log.child({ component: 'recovery' });
  if (left.kind === 'unreadable') {
    const temporary = await removeTemporary(deps, log);
    log.error({ reason: left.reason, temporary }, 'the command journal is unreadable: which command was interrupted is unknown; temporary files removed');
    deps.journal.end();
    return undefined;
  }
  const { entry } = left;
  log.warn({ journal: entry }, 'the previous run was interrupted during a command: cleaning up before the API listens');
  const containers = await removeContainers(deps, entry.containers, entry.store_args ?? [], log);
  // A scratch area (disk mode) is unmounted and detached before its disk is wiped.
  const scratch = entry.device && entry.written ? await removeScratchLeftovers(deps.runner, entry.device, entry.scratch_dir, log) : undefined;
  const cleanup: RecoveryCleanup = {
    containers,
    ...(scratch && (scratch.steps.length || scratch.failures.length) ? { scratch } : {}),
    disk: !entry.device ? 'no disk chosen' : entry.written ? await wipeDisk(deps.runner, entry.device, { log }) : 'not written',
    temporary: await removeTemporary(deps, log),
  };
  const error = interruptedError(entry, cleanup);
  log.error({ err: error, details: error.details }, 'the interrupted command is reported as FAILED');
  deps.journal.end();
  return {
    id: entry.id,
    command_name: entry.command.slice(entry.command.indexOf('.') + 1),
    command_status: 'FAILED',
    command_error: toWireError(error),
    command_result: null,
  };
}

function interruptedError(entry: JournalEntry, cleanup: RecoveryCleanup): AgentError {
  const method = entry.command.slice(entry.command.indexOf('.') + 1);
  const what = entry.step ? `${method} (${entry.step.interface} step ${entry.step.step})` : method;
  const why = entry.stopped ?? 'the agent was killed or crashed and started again';
  return new AgentError('COMMAND_INTERRUPTED', `Command ${what} was interrupted${entry.phase ? ` in phase ${entry.phase}` : ''}: ${why}`, {
    details: {
      command: entry.command,
      ...(entry.step ? { step: entry.step.step } : {}),
      ...(entry.phase ? { phase: entry.phase } : {}),
      ...(entry.device ? { device: entry.device, disk_written: entry.written } : {}),
      started_at: entry.started_at,
      ...(entry.stopped ? { stopped: entry.stopped } : {}),
      cleanup,
    },
  });
}

// By name only (never a pattern): `--time 0` kills at once, since a privileged install left
// running keeps writing the disk. A container podman is still removing counts until it is gone.
async function removeContainers(deps: RecoveryDeps, names: readonly string[], store: readonly string[], log: Logger): Promise<string[] | string> {
  if (names.length === 0) return [];
  let failure = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      await deps.runner.run('podman', [...store, 'rm', '--force', '--ignore', '--time', '0', '--', ...names], { timeoutMs: 60_000 });
    } catch (err) {
      failure = describeError(toAgentError(err));
    }
    const left = await existingContainers(deps.runner, names, store);
    if (left.length === 0) {
      log.info({ containers: names }, 'containers of the interrupted command removed');
      return [...names];
    }
    failure ||= `still present: ${left.join(', ')}`;
    if (attempt < 3) await sleep(deps.retryDelayMs ?? 1000);
  }
  log.error({ containers: names, failure }, 'the containers of the interrupted command could not be removed');
  return failure;
}

// `podman container exists` answers 0 (exists) or 1 (does not).
async function existingContainers(runner: CommandRunner, names: readonly string[], store: readonly string[]): Promise<string[]> {
  const present: string[] = [];
  for (const name of names) {
    const r = await runner.run('podman', [...store, 'container', 'exists', '--', name], { okExitCodes: [0, 1], timeoutMs: 60_000 }).catch(() => ({ exitCode: 0 }));
    if (r.exitCode === 0) present.push(name);
  }
  return present;
}

// Subdirectories of state_dir hold a command's temporary files (pull credentials, files for the
// install container); the state files themselves are plain files, and an atomic write that was
// cut short leaves a `.<name>.<pid>.<random>.tmp`.
async function removeTemporary(deps: RecoveryDeps, log: Logger): Promise<string[]> {
  const entries = await readdir(deps.stateDir, { withFileTypes: true }).catch(() => []);
  const kept = (name: string) => (deps.keep ?? []).some((path) => !relative(join(deps.stateDir, name), path).startsWith('..'));
  const removed: string[] = [];
  for (const e of entries) {
    const temporary = e.isDirectory() ? !kept(e.name) : e.isFile() && /^\..+\.tmp$/.test(e.name);
    if (!temporary) continue;
    await rm(join(deps.stateDir, e.name), { recursive: true, force: true }).then(
      () => removed.push(e.name),
      (err: unknown) => log.warn({ err, path: join(deps.stateDir, e.name) }, 'could not remove a temporary file of the interrupted command'),
    );
  }
  return removed;
}
