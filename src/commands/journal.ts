/**
 * The journal of the running command, kept in `state_dir`: which command and step, the phase
 * reached, the disk chosen and whether it was written, the containers started. An agent killed
 * half-way (SIGKILL, the OOM killer, a crash) reads it at its next start to know what to clean
 * up and what to tell the conductor (./recovery.ts). Each entry is written synchronously and
 * atomically, so it is on disk before the action it announces begins. Only async commands are
 * journaled: a sync one finishes before its POST answers, and a caller whose POST breaks off
 * knows it did not complete.
 * @module
 */
import { z } from 'zod';
import type { Logger } from '../log/index.ts';

// Lenient (unknown keys kept): a newer agent of the same ramdisk may have written more.
export const JournalEntry = z.looseObject({
  id: z.string().min(1),
  /** Full command name, `deploy.execute_deploy_step`. */
  command: z.string().min(1),
  started_at: z.string(),
  step: z.object({ interface: z.string(), step: z.string() }).optional(),
  phase: z.string().optional(),
  /** The disk the step chose. */
  device: z.string().optional(),
  /** The step may have written `device`: an interrupted command wipes it. */
  written: z.boolean().default(false),
  /** Containers of the command, recorded before they are started. */
  containers: z.array(z.string()).default([]),
  /** The podman options of the store the containers are in, when not the host's (a scratch area on the disk). */
  store_args: z.array(z.string()).optional(),
  /** The private directory of that scratch area (mounts below it). */
  scratch_dir: z.string().optional(),
  /** Why the agent stopped the command (shutdown), when it did. */
  stopped: z.string().optional(),
});
export type JournalEntry = z.infer<typeof JournalEntry>;

/** What a running command records as it goes; every call is on disk when it returns. */
export interface CommandJournal {
  /** Merges facts into the entry (`containers` are added to those already recorded). */
  record(facts: JournalFacts): void;
}
export type JournalFacts = Partial<Pick<JournalEntry, 'step' | 'phase' | 'device' | 'written' | 'containers' | 'store_args' | 'scratch_dir' | 'stopped'>>;

/** Where the journal lives: the state store (src/state) implements it. */
export interface JournalStorage {
  readJournal(): Promise<string | undefined>;
  writeJournal(text: string): void;
  removeJournal(): void;
}

/** What the last run left: nothing, an entry, or a file that is not a journal entry. */
export type LeftOver = { kind: 'none' } | { kind: 'entry'; entry: JournalEntry } | { kind: 'unreadable'; reason: string };

/** The journal file of one agent: at most one entry, the command running now. */
export class JournalFile {
  readonly #storage: JournalStorage;
  readonly #log: Logger;
  #entry: JournalEntry | undefined;

  constructor(storage: JournalStorage, log: Logger) {
    this.#storage = storage;
    this.#log = log.child({ component: 'journal' });
  }

  /** Starts the entry of a command; throws (the command must not start) if it cannot be written. */
  begin(id: string, command: string): CommandJournal {
    this.#entry = { id, command, started_at: new Date().toISOString(), written: false, containers: [] };
    this.#write();
    return {
      record: (facts) => {
        const entry = this.#entry;
        if (entry?.id !== id) return;
        this.#entry = { ...entry, ...facts, containers: [...new Set([...entry.containers, ...(facts.containers ?? [])])] };
        this.#write();
      },
    };
  }

  /** The command finished normally: nothing is left to recover. Never throws (the result stands). */
  end(): void {
    this.#entry = undefined;
    try {
      this.#storage.removeJournal();
    } catch (err) {
      this.#log.error({ err }, 'the journal of a finished command could not be removed: the next start will report it as interrupted');
    }
  }

  /** The entry the previous run of the agent left behind, if any. */
  async leftOver(): Promise<LeftOver> {
    const text = await this.#storage.readJournal();
    if (text === undefined) return { kind: 'none' };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      return { kind: 'unreadable', reason: `not JSON: ${(err as Error).message}` };
    }
    const parsed = JournalEntry.safeParse(json);
    if (!parsed.success) return { kind: 'unreadable', reason: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
    return { kind: 'entry', entry: parsed.data };
  }

  #write(): void {
    this.#storage.writeJournal(`${JSON.stringify(this.#entry, null, 2)}\n`);
  }
}
