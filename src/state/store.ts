/**
 * What survives an agent restart inside one ramdisk boot: the agent token, the TLS certificate,
 * the callback URL, the last lookup, and the journal of the running command. The conductor
 * refuses a heartbeat whose callback URL or `agent_verify_ca` changed, and masks the token
 * (`"******"`) on a second lookup, so a restarted agent that forgot them could never talk to it
 * again (ipa-protocol.md §3.4, §2.6); the journal tells it what a killed command left behind.
 *
 * Files live in `state_dir` (default /run/bootc-agent, a tmpfs): directory 0700, files 0600,
 * each written to a temporary file, synced and renamed before the write returns, so a crash
 * never leaves half a file and a journal entry is on disk before what it announces begins.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import type { CertificatePair } from '../tls/index.ts';

export const STATE_FILES = {
  token: 'token',
  certificate: 'tls-cert.pem',
  key: 'tls-key.pem',
  callbackUrl: 'callback-url',
  node: 'node.json',
  journal: 'command-journal.json',
} as const;

// Lenient: a newer agent may have written more fields.
const PersistedNode = z.object({
  node_uuid: z.string().min(1),
  node: z.record(z.string(), z.unknown()),
  config: z.record(z.string(), z.unknown()),
  saved_at: z.string(),
});
export type PersistedNode = z.infer<typeof PersistedNode>;

export interface StateStore {
  readonly dir: string;
  readToken(): Promise<string | undefined>;
  writeToken(token: string): Promise<void>;
  readCertificate(): Promise<CertificatePair | undefined>;
  writeCertificate(pair: CertificatePair): Promise<void>;
  readCallbackUrl(): Promise<string | undefined>;
  writeCallbackUrl(url: string): Promise<void>;
  readNode(): Promise<PersistedNode | undefined>;
  /** Saves the node and lookup config; a token inside `config.agent_token` is masked (it has its own file). */
  writeNode(nodeUuid: string, node: Record<string, unknown>, config: Record<string, unknown>): Promise<void>;
  /** The journal of the running command, as written (src/commands/journal.ts reads it). */
  readJournal(): Promise<string | undefined>;
  /** Replaces the journal; synchronous, so it is on disk when the call returns. */
  writeJournal(text: string): void;
  removeJournal(): void;
  /** Deletes every state file (tests, or an operator resetting the agent). */
  clear(): Promise<void>;
}

export function createStateStore(dir: string): StateStore {
  let ready = false;
  // The directory is created on first use, and tightened if it already existed.
  const ensureDir = () => {
    if (ready) return;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    } catch (err) {
      throw stateError(`State directory ${dir} cannot be created`, err);
    }
    ready = true;
  };

  const read = async (file: string): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, file), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw stateError(`State file ${join(dir, file)} cannot be read`, err);
    }
  };

  // Synchronous on purpose: the files are small, on a tmpfs, and written rarely; a caller that
  // goes on after the call knows the file is in place (the journal relies on that).
  const write = (file: string, content: string): void => {
    ensureDir();
    const target = join(dir, file);
    const temp = join(dir, `.${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      const fd = openSync(temp, 'wx', 0o600);
      try {
        writeFileSync(fd, content, 'utf8');
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, target);
    } catch (err) {
      rmSync(temp, { force: true });
      throw stateError(`State file ${target} cannot be written`, err);
    }
  };

  const readLine = async (file: string) => {
    const text = (await read(file))?.trim();
    return text ? text : undefined;
  };

  return {
    dir,
    readToken: () => readLine(STATE_FILES.token),
    writeToken: async (token) => write(STATE_FILES.token, `${token}\n`),
    readCallbackUrl: () => readLine(STATE_FILES.callbackUrl),
    writeCallbackUrl: async (url) => write(STATE_FILES.callbackUrl, `${url}\n`),
    async readCertificate() {
      const [certPem, keyPem] = await Promise.all([read(STATE_FILES.certificate), read(STATE_FILES.key)]);
      return certPem && keyPem ? { certPem, keyPem } : undefined;
    },
    async writeCertificate(pair) {
      // Key first: a crash in between leaves a key that does not match the old certificate,
      // which loadOrCreateCertificate detects and replaces.
      write(STATE_FILES.key, pair.keyPem);
      write(STATE_FILES.certificate, pair.certPem);
    },
    async readNode() {
      const text = await read(STATE_FILES.node);
      if (text === undefined) return undefined;
      try {
        const parsed = PersistedNode.safeParse(JSON.parse(text));
        return parsed.success ? parsed.data : undefined;
      } catch {
        return undefined; // unreadable JSON: as if never saved, the next lookup rewrites it
      }
    },
    async writeNode(nodeUuid, node, config) {
      const safeConfig = 'agent_token' in config && config.agent_token ? { ...config, agent_token: '******' } : config;
      const record: PersistedNode = { node_uuid: nodeUuid, node, config: safeConfig, saved_at: new Date().toISOString() };
      write(STATE_FILES.node, `${JSON.stringify(record, null, 2)}\n`);
    },
    readJournal: () => read(STATE_FILES.journal),
    writeJournal: (text) => write(STATE_FILES.journal, text),
    removeJournal() {
      try {
        rmSync(join(dir, STATE_FILES.journal), { force: true });
      } catch (err) {
        throw stateError(`State file ${join(dir, STATE_FILES.journal)} cannot be removed`, err);
      }
    },
    async clear() {
      await Promise.all(Object.values(STATE_FILES).map((f) => rm(join(dir, f), { force: true })));
    },
  };
}

function stateError(message: string, cause: unknown): AgentError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new AgentError('INTERNAL', `${message}: ${reason}`, { cause, details: { code: (cause as { code?: string }).code ?? null } });
}
