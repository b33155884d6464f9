/**
 * Runs commands one at a time and keeps their results in execution order
 * (IPA `ExecuteCommandMixin`). The list holds only what the conductor asked for.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { AgentError, describeError, toAgentError, type AgentError as AgentErrorType } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { CommandJournal, JournalFile } from './journal.ts';
import type { CommandDefinition, CommandStatus, Progress, WireCommandError, WireCommandResult } from './types.ts';

interface CommandRecord {
  id: string;
  fullName: string;
  method: string;
  status: CommandStatus;
  error: WireCommandError | null;
  result: unknown;
  progress: Progress | undefined;
  done: Promise<void>;
  abort: AbortController;
  journal: CommandJournal | undefined;
  /** Why the agent stopped it (shutdown), if it did. */
  stopped?: string;
}

export interface CommandExecutorOptions {
  log: Logger;
  /** Called when a command finishes (the agent forces a heartbeat). */
  onFinished?: (result: WireCommandResult) => void;
  /** Called on progress reports (the heartbeat message and the log). */
  onProgress?: (command: string, progress: Progress) => void;
  /** Cap on kept results: the oldest finished ones are dropped past it. */
  maxResults?: number;
  /** Where async commands are journaled (./journal.ts), so a restart after a kill can recover. */
  journal?: JournalFile;
}

export function toWireError(err: AgentErrorType): WireCommandError {
  return { type: err.type, code: err.status, message: err.message, details: describeError(err) };
}

export class CommandExecutor {
  readonly #commands = new Map<string, CommandDefinition>();
  readonly #results = new Map<string, CommandRecord>();
  readonly #log: Logger;
  readonly #options: CommandExecutorOptions;
  #last: CommandRecord | undefined;
  #closed: string | undefined;

  constructor(options: CommandExecutorOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: 'commands' });
  }

  register(definitions: readonly CommandDefinition[]): void {
    for (const def of definitions) {
      if (!/^[a-z_]+\.[a-z_0-9]+$/.test(def.name)) throw new Error(`bad command name ${def.name}`);
      if (this.#commands.has(def.name)) throw new Error(`command ${def.name} registered twice`);
      this.#commands.set(def.name, def);
    }
  }

  names(): string[] {
    return [...this.#commands.keys()].sort();
  }

  /**
   * Validates and starts a command. Throws (→ HTTP 4xx) for a bad name, bad params or a busy
   * agent; a failure while running is recorded in the result instead (HTTP 200, FAILED).
   */
  execute(name: unknown, params: unknown): { result: WireCommandResult; sync: boolean } {
    if (typeof name !== 'string' || !name.includes('.')) {
      throw new AgentError('INVALID_COMMAND', `Invalid command: Command name must be of the form <extension>.<name>, got ${JSON.stringify(name)}`);
    }
    const [extension] = name.split('.', 1);
    const def = this.#commands.get(name);
    if (!def) {
      if (![...this.#commands.keys()].some((n) => n.startsWith(`${extension}.`))) {
        throw new AgentError('NOT_FOUND', `Extension with id ${extension} not found`, { details: { extension } });
      }
      throw new AgentError('INVALID_COMMAND', `Invalid command: Unknown command: ${name}`, { details: { command: name } });
    }
    if (this.#closed) throw new AgentError('AGENT_BUSY', `Agent is busy: ${this.#closed}`, { details: { stopping: true } });
    if (this.#last && this.#last.status === 'RUNNING') {
      throw new AgentError('AGENT_BUSY', `Agent is busy: executing command ${this.#last.method}`, {
        details: { running: this.#last.fullName, running_id: this.#last.id },
      });
    }
    const parsed = def.params.safeParse(params ?? {});
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`);
      throw new AgentError('INVALID_PARAMS', `Invalid command parameters for ${name}: ${issues.join('; ')}`, { details: { issues } });
    }

    const method = name.slice(name.indexOf('.') + 1);
    const id = randomUUID();
    // On disk before the reply says RUNNING: a kill from now on is recovered at the next start.
    const journal = def.mode === 'async' ? this.#options.journal?.begin(id, name) : undefined;
    let resolveDone!: () => void;
    const record: CommandRecord = {
      id,
      fullName: name,
      method,
      status: 'RUNNING',
      error: null,
      result: null,
      progress: undefined,
      done: new Promise<void>((r) => { resolveDone = r; }),
      abort: new AbortController(),
      journal,
    };
    this.#results.set(record.id, record);
    this.#last = record;
    this.#trim();
    const log = this.#log.child({ command: name, commandId: record.id });
    log.info('command started');

    const run = () => this.#run(def, parsed.data, record, log, resolveDone);
    if (def.mode === 'sync') {
      // Sync commands finish before the POST answers; the caller awaits `wait()`.
      void run();
    } else {
      setImmediate(() => void run());
    }
    return { result: this.#toWire(record), sync: def.mode === 'sync' };
  }

  async #run(def: CommandDefinition, params: unknown, record: CommandRecord, log: Logger, resolveDone: () => void): Promise<void> {
    const { journal } = record;
    try {
      const value = await def.run(params, {
        signal: record.abort.signal,
        log,
        journal,
        reportProgress: (progress) => {
          record.progress = { ...progress, at: new Date().toISOString() };
          log.info({ progress: record.progress }, 'progress');
          this.#options.onProgress?.(record.fullName, record.progress);
        },
      });
      record.result = wrapResult(def.mode, record.method, value);
      record.status = 'SUCCEEDED';
      log.info('command succeeded');
    } catch (err) {
      const agentError = toAgentError(err);
      record.status = agentError.code === 'VERSION_MISMATCH' ? 'CLEAN_VERSION_MISMATCH' : 'FAILED';
      record.error = toWireError(agentError);
      record.result = null;
      log.error({ err: agentError, details: agentError.details }, 'command failed');
    } finally {
      record.progress = undefined;
      // A command the agent stopped keeps its entry: the next start reports it as interrupted.
      if (journal && (record.stopped === undefined || record.status === 'SUCCEEDED')) this.#options.journal?.end();
      resolveDone();
      this.#options.onFinished?.(this.#toWire(record));
    }
  }

  list(): WireCommandResult[] {
    return [...this.#results.values()].map((r) => this.#toWire(r));
  }

  get(id: string): WireCommandResult {
    const record = this.#results.get(id);
    if (!record) throw new AgentError('NOT_FOUND', `Command with id ${id} not found`, { details: { id } });
    return this.#toWire(record);
  }

  /** Resolves when the command is no longer RUNNING (or the signal aborts the wait). */
  async wait(id: string, signal?: AbortSignal): Promise<WireCommandResult> {
    const record = this.#results.get(id);
    if (!record) throw new AgentError('NOT_FOUND', `Command with id ${id} not found`, { details: { id } });
    if (signal) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new AgentError('CANCELLED', 'Wait cancelled', { cause: signal.reason }));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        void record.done.then(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    } else {
      await record.done;
    }
    return this.#toWire(record);
  }

  /** The running command, if any: its name and latest progress (for heartbeats). */
  current(): { name: string; progress: Progress | undefined } | undefined {
    if (!this.#last || this.#last.status !== 'RUNNING') return undefined;
    return { name: this.#last.fullName, progress: this.#last.progress };
  }

  /**
   * Agent shutdown: refuses new commands from now on, cancels the running one the way a cancel
   * does (its step cleans up) and waits for it to settle. Its journal entry stays, naming
   * `reason`, so the next start reports it as interrupted.
   */
  async abortRunning(reason: string): Promise<void> {
    this.#closed ??= 'the agent is stopping';
    const last = this.#last;
    if (!last || last.status !== 'RUNNING') return;
    last.stopped = reason;
    try {
      last.journal?.record({ stopped: reason });
    } catch (err) {
      this.#log.error({ err }, 'could not record the stop in the command journal');
    }
    last.abort.abort(new AgentError('CANCELLED', reason));
    await last.done;
  }

  /** Holds the result of a command a previous run of the agent was interrupted in (./recovery.ts). */
  adopt(result: WireCommandResult): void {
    const record: CommandRecord = {
      id: result.id, fullName: result.command_name, method: result.command_name, status: result.command_status,
      error: result.command_error, result: result.command_result, progress: undefined, done: Promise.resolve(),
      abort: new AbortController(), journal: undefined,
    };
    this.#results.set(record.id, record);
    this.#last = record;
    this.#trim();
  }

  #trim(): void {
    const max = this.#options.maxResults ?? 1000;
    for (const [id, record] of this.#results) {
      if (this.#results.size <= max) break;
      if (record.status !== 'RUNNING') this.#results.delete(id);
    }
  }

  #toWire(record: CommandRecord): WireCommandResult {
    const running = record.status === 'RUNNING';
    return {
      id: record.id,
      command_name: record.method,
      command_status: record.status,
      command_error: record.error,
      command_result: running ? (record.progress ? { progress: record.progress } : null) : record.result,
    };
  }
}

// IPA wraps plain-string results: sync → {result: s}; async → {result: "<method>: s"}.
function wrapResult(mode: 'sync' | 'async', method: string, value: unknown): unknown {
  if (typeof value === 'string') return { result: mode === 'async' ? `${method}: ${value}` : value };
  return value ?? null;
}
