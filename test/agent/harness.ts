/**
 * Builds a real agent (`createAgent`) for tests: HTTPS API on 127.0.0.1 port 0, a fake
 * conductor, a temporary state_dir, a recording power controller, a runner that refuses every
 * program unless a test passes a real one, and gated test steps whose progress and completion
 * the test controls. Everything is undone in `t.after`, even when the test fails.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import { createAgent, type Agent, type AgentDeps } from '../../src/agent.ts';
import type { Progress, StepDefinition } from '../../src/commands/index.ts';
import { loadConfig, type OptionKey } from '../../src/config/index.ts';
import type { CommandRunner } from '../../src/exec/index.ts';
import { createSilentLogger, type Logger } from '../../src/log/index.ts';
import type { PowerController } from '../../src/system/index.ts';
import { startFakeConductor, type FakeConductor, type FakeConductorOptions } from '../helpers/fake-conductor.ts';

export const AGENT_VERSION = '0.1.0-test';
export const MACS = ['52:54:00:12:34:56', '52:54:00:ab:cd:ef'];

/** Records what the agent asked of the machine; never touches the host. */
export interface RecordingPower extends PowerController {
  readonly actions: string[];
}

export function createRecordingPower(): RecordingPower {
  const actions: string[] = [];
  return {
    actions,
    sync: async () => { actions.push('sync'); },
    powerOff: async () => { actions.push('powerOff'); },
    reboot: async () => { actions.push('reboot'); },
  };
}

/** A runner for agents whose tests must not run any program. */
export const refusingRunner: CommandRunner = {
  run: async (file, args) => { throw new Error(`test agent: unexpected command ${[file, ...args].join(' ')}`); },
};

/**
 * A deploy step the test drives: it reports each progress value it is given through
 * `report()`, and finishes when the test calls `release()` (or fails with `fail()`).
 */
export interface GatedStep {
  readonly definition: StepDefinition;
  /** Resolves with the step's args once the step started. */
  readonly started: Promise<Record<string, unknown>>;
  report(progress: Progress): void;
  release(result?: unknown): void;
  fail(error: Error): void;
  /** Number of times the step ran. */
  readonly runs: number;
}

export function createGatedStep(step = 'test_gated', iface: 'deploy' | 'clean' = 'deploy'): GatedStep {
  let reporter: ((p: Progress) => void) | undefined;
  let finish: { resolve(v: unknown): void; reject(e: Error): void } | undefined;
  let markStarted!: (args: Record<string, unknown>) => void;
  const started = new Promise<Record<string, unknown>>((resolve) => { markStarted = resolve; });
  let runs = 0;
  const pending: Array<{ kind: 'release'; value: unknown } | { kind: 'fail'; error: Error }> = [];
  const definition: StepDefinition = {
    interface: iface,
    step,
    priority: 0,
    reboot_requested: false,
    abortable: true,
    argsinfo: { wait: { description: 'test only', required: false } },
    run: (args, ctx) => new Promise((resolve, reject) => {
      runs++;
      reporter = (p) => ctx.reportProgress(p);
      finish = { resolve, reject };
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true });
      markStarted(args);
      const queued = pending.shift();
      if (queued?.kind === 'release') resolve(queued.value);
      if (queued?.kind === 'fail') reject(queued.error);
    }),
  };
  return {
    definition,
    started,
    get runs() { return runs; },
    report: (p) => {
      if (!reporter) throw new Error('the gated step has not started');
      reporter(p);
    },
    release: (value = { released: true }) => {
      if (finish) finish.resolve(value);
      else pending.push({ kind: 'release', value });
    },
    fail: (error) => {
      if (finish) finish.reject(error);
      else pending.push({ kind: 'fail', error });
    },
  };
}

/** A step that returns its arguments at once. */
export const echoStep: StepDefinition = {
  interface: 'deploy',
  step: 'test_echo',
  priority: 0,
  reboot_requested: false,
  run: async (args) => `echo ${JSON.stringify(args)}`,
};

export async function tempDir(t: TestContext, prefix = 'agent-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestAgentOptions {
  conductor?: FakeConductor;
  conductorOptions?: FakeConductorOptions;
  stateDir?: string;
  /** Config overrides on top of the test defaults. */
  config?: Partial<Record<OptionKey, unknown>>;
  power?: PowerController;
  runner?: CommandRunner;
  extraSteps?: StepDefinition[];
  lookupMacs?: string[];
  log?: Logger;
  replyGraceMs?: number;
  /** Do not call start() (the test wants to time it). */
  noStart?: boolean;
}

export interface TestAgent {
  agent: Agent;
  conductor: FakeConductor;
  stateDir: string;
  power: PowerController;
  stop(): Promise<void>;
}

/** The config a test agent runs with: loopback, port 0, HTTPS, fast lookup retries. */
export function testConfig(apiUrl: string, stateDir: string, over: Partial<Record<OptionKey, unknown>> = {}) {
  return loadConfig({
    overrides: {
      api_url: apiUrl,
      listen_host: '127.0.0.1',
      listen_port: 0,
      advertise_host: '127.0.0.1',
      state_dir: stateDir,
      log_file: join(stateDir, 'agent.log'),
      lookup_interval: 0.05,
      lookup_timeout: 20,
      http_request_timeout: 5,
      global_request_id: 'req-00000000-1111-2222-3333-444444444444',
      ...over,
    },
  });
}

export async function startTestAgent(t: TestContext, options: TestAgentOptions = {}): Promise<TestAgent> {
  let conductor = options.conductor;
  if (!conductor) {
    const started = await startFakeConductor({ macs: [MACS[1]!], ...options.conductorOptions });
    conductor = started;
    t.after(() => started.close());
  }
  const stateDir = options.stateDir ?? await tempDir(t);
  const power = options.power ?? createRecordingPower();
  const deps: AgentDeps = {
    config: testConfig(conductor.url, stateDir, options.config),
    log: options.log ?? createSilentLogger(),
    runner: options.runner ?? refusingRunner,
    power,
    version: AGENT_VERSION,
    lookupMacs: async () => options.lookupMacs ?? MACS,
    replyGraceMs: options.replyGraceMs ?? 20,
    extraSteps: options.extraSteps ?? [],
  };
  const agent = createAgent(deps);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await agent.stop();
  };
  t.after(stop);
  if (!options.noStart) await agent.start();
  return { agent, conductor, stateDir, power, stop };
}

/** Polls `check` every 20 ms until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `promise`, or a rejection naming `what` if it has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once the conductor has received no heartbeat for `quietMs` (forced ones have gone out). */
export async function heartbeatsQuiet(conductor: FakeConductor, quietMs: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = conductor.heartbeats.at(-1)?.at ?? 0;
    if (Date.now() - last >= quietMs) return;
    if (Date.now() > deadline) throw new Error(`heartbeats did not stop for ${quietMs} ms within ${timeoutMs} ms`);
    await sleep(Math.min(50, quietMs));
  }
}

/** The body of `deploy.execute_deploy_step` as Ironic's AgentClient sends it. */
export function executeDeployStep(step: string, args: Record<string, unknown> = {}, node: Record<string, unknown> = {}) {
  return {
    name: 'deploy.execute_deploy_step',
    params: {
      step: { interface: 'deploy', step, args, priority: 0 },
      node: { uuid: 'node', properties: {}, instance_info: {}, driver_internal_info: {}, ...node },
      ports: [{ address: MACS[1] }],
      deploy_version: { bootc_agent_hardware_manager: '1.0' },
    },
  };
}

/** A step that runs for `args.duration_ms` (default 500), reporting progress every 100 ms. */
export const slowStep: StepDefinition = {
  interface: 'deploy',
  step: 'test_slow',
  priority: 0,
  reboot_requested: false,
  argsinfo: { duration_ms: { description: 'how long to run', required: false } },
  run: async (args, ctx) => {
    const total = typeof args.duration_ms === 'number' ? args.duration_ms : 500;
    const started = Date.now();
    for (let i = 1; Date.now() - started < total; i++) {
      ctx.reportProgress({ phase: 'work', message: `tick ${i}`, bytes_done: Math.min(total, Date.now() - started), bytes_total: total });
      await sleep(100, undefined, { signal: ctx.signal });
    }
    return `slept ${total} ms`;
  },
};

/**
 * The real runner, limited to the read-only programs log collection uses (and `tar` to pack
 * them); anything else is refused so a test agent cannot touch the host by mistake.
 */
export function logCollectionRunner(real: CommandRunner): CommandRunner {
  const allowed = new Set(['tar', 'journalctl', 'dmesg', 'lsblk', 'ip', 'df', 'mount', 'ps', 'free']);
  return {
    run: (file, args, options) => {
      const podmanReadOnly = file === 'podman' && ['info', 'images', 'ps'].includes(args[0] ?? '');
      const mountList = file === 'mount' && args.length === 0;
      if ((allowed.has(file) && (file !== 'mount' || mountList)) || podmanReadOnly) return real.run(file, args, options);
      return refusingRunner.run(file, args, options);
    },
  };
}
