/**
 * The real agent as a process (`node --import tsx src/main.ts`), the way systemd runs it: its
 * own configuration (no /proc/cmdline, no /etc/bootc-agent), a state_dir and a fixed API port
 * the test keeps across restarts (the conductor pins the callback URL), and its own process
 * group, so a test can kill the agent alone (`kill`, as systemd's `--kill-whom=main`) and
 * afterwards everything it left running (`killGroup`, by the group's id).
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface AgentProcessOptions {
  apiUrl: string;
  stateDir: string;
  /** Fixed, so the callback URL survives a restart. */
  port: number;
  /** More flags, e.g. `['--shutdown-timeout', '2']`. */
  flags?: string[];
  /** Directories put first on PATH (stand-in programs). */
  pathPrefix?: string[];
  env?: Record<string, string>;
}

export interface AgentProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code, or the signal's name, once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** The agent log (JSON lines), parsed. */
  logRecords(): Promise<Array<Record<string, any>>>;
  /** A signal to the agent process alone. */
  kill(signal: NodeJS.Signals): void;
  /** SIGKILL to the process group (the agent and whatever it started); never fails. */
  killGroup(): void;
}

export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const configFile = join(options.stateDir, '..', `agent-config-${options.port}.json`);
  await writeFile(configFile, '{}');
  const logFile = join(options.stateDir, 'agent.log');
  const child = spawn(process.execPath, [
    '--import', 'tsx', join(ROOT, 'src/main.ts'),
    '--api-url', options.apiUrl, '--listen-host', '127.0.0.1', '--listen-port', String(options.port), '--advertise-host', '127.0.0.1',
    '--state-dir', options.stateDir, '--log-file', logFile, '--cmdline-file', '/dev/null', '--config', configFile,
    ...(options.flags ?? []),
  ], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...options.env, PATH: [...(options.pathPrefix ?? []), process.env.PATH ?? ''].join(':') },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const pid = child.pid!;
  return {
    child,
    pid,
    exited,
    stderr: () => stderr,
    logRecords: async () => (await readFile(logFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>),
    kill: (signal) => { if (child.exitCode === null && child.signalCode === null) child.kill(signal); },
    killGroup: () => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // the group is already gone
      }
    },
  };
}
