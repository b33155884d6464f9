/**
 * `log.collect_system_logs`: a gzipped tar of what an operator needs to see why a deploy
 * failed, built in well under the conductor's 60 s command timeout.
 * @module
 */
import { getMaxListeners, setMaxListeners } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { redactSecrets } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';

export interface LogSource {
  /** File name inside the archive. */
  name: string;
  argv?: [string, ...string[]];
  file?: string;
}

export const DEFAULT_LOG_SOURCES: readonly LogSource[] = [
  { name: 'journal.txt', argv: ['journalctl', '--boot', '--no-pager', '--lines=50000', '--output=short-precise'] },
  { name: 'dmesg.txt', argv: ['dmesg', '--ctime'] },
  { name: 'lsblk.txt', argv: ['lsblk', '--all', '--bytes', '--output', 'NAME,KNAME,SIZE,TYPE,FSTYPE,LABEL,PARTLABEL,UUID,PARTUUID,MODEL,SERIAL,MOUNTPOINT'] },
  { name: 'ip-addr.txt', argv: ['ip', 'addr'] },
  { name: 'ip-route.txt', argv: ['ip', 'route'] },
  { name: 'podman-info.txt', argv: ['podman', 'info'] },
  { name: 'podman-images.txt', argv: ['podman', 'images', '--digests'] },
  { name: 'podman-ps.txt', argv: ['podman', 'ps', '--all'] },
  { name: 'df.txt', argv: ['df', '--human-readable'] },
  { name: 'mount.txt', argv: ['mount'] },
  { name: 'ps.txt', argv: ['ps', 'auxww'] },
  { name: 'free.txt', argv: ['free', '--mebi'] },
  { name: 'cmdline.txt', file: '/proc/cmdline' },
  { name: 'meminfo.txt', file: '/proc/meminfo' },
];

export interface CollectLogsOptions {
  runner: CommandRunner;
  log: Logger;
  signal: AbortSignal;
  /** The agent's own log file, included as agent.log. */
  agentLogFile?: string | undefined;
  sources?: readonly LogSource[];
  /** Secrets known at run time (the agent token): masked in every collected file. */
  secrets(): readonly string[];
  /** Per-source time limit. */
  perSourceTimeoutMs?: number;
}

export async function collectSystemLogs(options: CollectLogsOptions): Promise<{ system_logs: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bootc-agent-logs-'));
  const secrets = options.secrets();
  const index: string[] = [];
  try {
    const sources = [...(options.sources ?? DEFAULT_LOG_SOURCES)];
    if (options.agentLogFile) sources.unshift({ name: 'agent.log', file: options.agentLogFile });
    // Every source command listens on the one signal at the same time: not a leak.
    setMaxListeners(Math.max(getMaxListeners(options.signal), sources.length + 10), options.signal);
    await Promise.all(sources.map(async (source) => {
      const started = performance.now();
      try {
        let text: string;
        if (source.argv) {
          const result = await options.runner.run(source.argv[0], source.argv.slice(1), {
            signal: options.signal, timeoutMs: options.perSourceTimeoutMs ?? 15_000, okExitCodes: [0, 1],
          });
          text = result.stdout + (result.stderr ? `\n--- stderr ---\n${result.stderr}` : '');
        } else {
          text = await readFile(source.file!, 'utf8');
        }
        await writeFile(join(dir, source.name), redactSecrets(text, secrets), { mode: 0o600 });
        index.push(`${source.name}: ok (${Math.round(performance.now() - started)} ms)`);
      } catch (err) {
        const reason = isAgentError(err) ? err.code === 'COMMAND_NOT_FOUND' ? 'not installed' : err.message : (err as Error).message;
        index.push(`${source.name}: unavailable (${redactSecrets(reason, secrets)})`);
      }
    }));
    index.sort();
    await writeFile(join(dir, 'index.txt'), `${index.join('\n')}\n`);
    const archive = join(tmpdir(), `bootc-agent-logs-${process.pid}-${Date.now()}.tar.gz`);
    try {
      await options.runner.run('tar', ['--create', '--gzip', '--file', archive, '--directory', dir, '.'], { signal: options.signal, timeoutMs: 30_000 });
      const data = await readFile(archive);
      options.log.info({ bytes: data.length, sources: index.length }, 'system logs collected');
      return { system_logs: data.toString('base64') };
    } finally {
      await rm(archive, { force: true });
    }
  } catch (err) {
    if (isAgentError(err)) throw new AgentError('LOG_COLLECTION_FAILED', `Collecting system logs failed: ${err.message}`, { cause: err, details: err.details });
    throw new AgentError('LOG_COLLECTION_FAILED', `Collecting system logs failed: ${(err as Error).message}`, { cause: err });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

