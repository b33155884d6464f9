/**
 * The command model of ironic-python-agent: `<extension>.<command>` names, results polled by
 * id, one command at a time.
 * @module
 */
import type { z } from 'zod';
import type { Logger } from '../log/index.ts';
import type { CommandJournal } from './journal.ts';

export type CommandStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CLEAN_VERSION_MISMATCH';

/** `command_error` on the wire (IPA `RESTError.serializable_fields`). */
export interface WireCommandError {
  type: string;
  code: number;
  message: string;
  details: string;
}

/** A command result exactly as IPA serializes it (no other fields). */
export interface WireCommandResult {
  id: string;
  command_name: string;
  command_status: CommandStatus;
  command_error: WireCommandError | null;
  command_result: unknown;
}

/** A progress report of a long command: shown in `command_result.progress` while RUNNING. */
export interface Progress {
  phase: string;
  message: string;
  bytes_done?: number;
  bytes_total?: number;
  [key: string]: unknown;
}

export interface CommandContext {
  signal: AbortSignal;
  log: Logger;
  reportProgress(progress: Progress): void;
  /** The running command's journal entry (async commands of an agent with a state_dir). */
  journal?: CommandJournal | undefined;
}

export interface CommandDefinition<P = unknown> {
  /** Full name, `<extension>.<command>`. */
  name: string;
  /** `sync` commands answer in the POST; `async` ones return RUNNING and are polled. */
  mode: 'sync' | 'async';
  /** zod schema of `params` (strict: unknown keys are a 400). */
  params: z.ZodType<P>;
  run(params: P, ctx: CommandContext): Promise<unknown>;
}

// Lets a list hold definitions with different parameter types.
export function defineCommand<S extends z.ZodType>(def: {
  name: string;
  mode: 'sync' | 'async';
  params: S;
  run(params: z.output<S>, ctx: CommandContext): Promise<unknown>;
}): CommandDefinition {
  return def as unknown as CommandDefinition;
}
