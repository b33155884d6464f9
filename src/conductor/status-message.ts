/**
 * The heartbeat's `agent_status_message` (API ≥ 1.72): what the running command is doing, and,
 * once it finished, how it ended. Ironic keeps the last non-empty message it received, so after
 * a command whose progress went out in a heartbeat finishes, the next heartbeats say how it ended
 * instead of leaving its last progress line on the node.
 * @module
 */
import { MiB } from '../io/sizes.ts';

/** The running command as the heartbeat describes it (the executor's `current()`). */
export interface RunningCommand {
  name: string;
  progress?: { phase: string; message: string; bytes_done?: number | undefined; bytes_total?: number | undefined } | undefined;
}

/** Ironic's column for the message is 255 characters. */
const MAX_MESSAGE = 255;

/** A short human summary of a command's progress. */
export function progressMessage(command: RunningCommand): string {
  const { name, progress } = command;
  if (!progress) return `running ${name}`;
  const bytes = progress.bytes_total
    ? ` (${Math.floor(((progress.bytes_done ?? 0) * 100) / progress.bytes_total)}% of ${Math.ceil(progress.bytes_total / MiB)} MiB)`
    : '';
  return `${name}: ${progress.phase}: ${progress.message}${bytes}`.slice(0, MAX_MESSAGE);
}

export interface StatusMessages {
  /** The message for the next heartbeat, given the command running now (if any). */
  next(current: RunningCommand | undefined): string | undefined;
  /** The running command ended with `status` (`SUCCEEDED`, `FAILED`, …). */
  finished(status: string): void;
  /** How a command ended that no heartbeat of this process reported running (one the last run was killed in). */
  ended(message: string): void;
}

export function createStatusMessages(): StatusMessages {
  let sentFor: string | undefined;
  let ended: string | undefined;
  return {
    next(current) {
      if (!current) return ended;
      sentFor = current.name;
      return progressMessage(current);
    },
    finished(status) {
      if (sentFor) ended = `${sentFor}: ${status}`;
      sentFor = undefined;
    },
    ended(message) {
      ended = message.slice(0, MAX_MESSAGE);
    },
  };
}
