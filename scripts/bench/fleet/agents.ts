/**
 * The fleet: N agent processes on this machine, each as on its own node — its own state_dir,
 * its own loop disk (a sparse file), its own podman store (as each ramdisk has its own
 * /var/lib/containers), its own registries.conf.d directory for the mirror drop-in, its own API
 * port. They run standalone (no conductor: the bench posts the deploy step to each agent's API
 * the way a conductor does and polls the command), over plain HTTP on 127.0.0.1.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { deferCleanup, freePort, procCpuSeconds, run, sleep, stopChild } from '../common.ts';
import { attachLoop, type LoopDevice } from '../loop.ts';

export interface FleetAgentOptions {
  /** argv that starts the agent (`node … dist/bootc-agent.mjs`). */
  argv: string[];
  dir: string;
  index: number;
  disk: LoopDevice;
  /** storage.conf of this node's private podman store. */
  storageConf: string;
  /** Agent flags, e.g. `--registry-mirrors=…`. */
  flags: string[];
}

export interface StepOutcome {
  ok: boolean;
  seconds: number;
  error?: string;
  result?: Record<string, unknown>;
}

export interface FleetAgent {
  index: number;
  pid: number;
  disk: LoopDevice;
  storageConf: string;
  registriesConfDir: string;
  /** Posts `deploy.execute_deploy_step` and waits for it to finish. */
  deploy(step: string, args: Record<string, unknown>, timeoutS: number): Promise<StepOutcome>;
  cpuSeconds(): Promise<number | undefined>;
  stderr(): string;
  stop(): Promise<void>;
}

interface WireCommand {
  id: string;
  command_status: string;
  command_error: { message?: string; details?: unknown } | null;
  command_result: Record<string, unknown> | null;
}

async function api(base: string, token: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const url = new URL(path, base);
  url.searchParams.set('agent_token', token);
  const res = await request(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
}

async function waitListening(base: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`agent exited ${child.exitCode ?? child.signalCode}: ${stderr().trim().split('\n').slice(-3).join(' | ')}`);
    const ok = await request(new URL('/v1/status', base)).then(async (r) => { await r.body.dump(); return r.statusCode === 200; }, () => false);
    if (ok) return;
    await sleep(100);
  }
  throw new Error('agent did not listen within 60 s');
}

export async function startFleetAgent(o: FleetAgentOptions): Promise<FleetAgent> {
  const stateDir = join(o.dir, 'state');
  const registriesConfDir = join(o.dir, 'registries.conf.d');
  await mkdir(stateDir, { recursive: true });
  await mkdir(registriesConfDir, { recursive: true });
  const token = randomBytes(32).toString('base64url');
  const port = await freePort();
  const config = join(o.dir, 'agent.json');
  // The token goes in the config file, never on the command line.
  await writeFile(config, JSON.stringify({
    agent_token: token, listen_host: '127.0.0.1', listen_port: port, advertise_host: '127.0.0.1', advertise_protocol: 'http',
    state_dir: stateDir, log_file: join(o.dir, 'agent.log'), include_loop_devices: true, disk_wait_attempts: 1, disk_wait_delay: 0,
  }), { mode: 0o600 });
  const child = spawn(o.argv[0]!, [...o.argv.slice(1), '--config', config, '--cmdline-file', '/dev/null', ...o.flags], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...withoutAgentEnv(process.env), CONTAINERS_STORAGE_CONF: o.storageConf },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-8000); });
  const pid = child.pid!;
  const stop = deferCleanup(() => stopChild(child, 35_000));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitListening(base, child, () => stderr);
  } catch (err) {
    await stop();
    throw err;
  }

  const deploy = async (step: string, args: Record<string, unknown>, timeoutS: number): Promise<StepOutcome> => {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const posted = await api(base, token, '/v1/commands/?wait=false', {
      name: 'deploy.execute_deploy_step',
      params: {
        step: { interface: 'deploy', step, args },
        node: { uuid: randomUUID(), properties: { root_device: { name: o.disk.device } }, instance_info: {}, driver_internal_info: {} },
        ports: [],
        deploy_version: { bootc_agent_hardware_manager: '1.0' },
      },
    });
    if (posted.status !== 200) return { ok: false, seconds: seconds(), error: `POST: HTTP ${posted.status} ${JSON.stringify(posted.json).slice(0, 300)}` };
    const id = (posted.json as WireCommand).id;
    while (seconds() < timeoutS) {
      await sleep(250);
      const polled = await api(base, token, `/v1/commands/${id}`).catch(() => undefined);
      const command = polled?.json as WireCommand | undefined;
      if (!command || command.command_status === 'RUNNING') continue;
      if (command.command_status === 'SUCCEEDED') return { ok: true, seconds: seconds(), result: command.command_result ?? {} };
      const details = command.command_error?.details === undefined ? '' : ` (${JSON.stringify(command.command_error.details).slice(0, 600)})`;
      return { ok: false, seconds: seconds(), error: `${command.command_error?.message ?? command.command_status}${details}`, result: command.command_result ?? {} };
    }
    return { ok: false, seconds: seconds(), error: `not finished after ${timeoutS} s` };
  };

  return {
    index: o.index, pid, disk: o.disk, storageConf: o.storageConf, registriesConfDir, deploy, stop,
    cpuSeconds: () => procCpuSeconds(pid),
    stderr: () => stderr,
  };
}

// The bench's own environment must not configure the agents (BOOTC_AGENT_* would).
function withoutAgentEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('BOOTC_AGENT_') && k !== 'CONTAINERS_REGISTRIES_CONF'));
}

/**
 * One podman store per node under `root` (a tmpfs the caller mounted), in directories the
 * stand-in's secret scan does not read; `emptyStore` removes every image of that store between
 * rounds, so each deploy pulls everything again.
 */
export async function nodeStore(root: string, index: number): Promise<string> {
  const dir = join(root, `node-${index}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const conf = join(dir, 'storage.conf');
  await writeFile(conf, `[storage]\ndriver = "overlay"\ngraphroot = "${join(dir, 'graph')}"\nrunroot = "${join(dir, 'run')}"\n`);
  return conf;
}

export async function emptyStore(storageConf: string): Promise<void> {
  const env = { ...process.env, CONTAINERS_STORAGE_CONF: storageConf };
  const ids = (await run('podman', ['images', '-q', '--no-trunc'], { env, allowFail: true })).stdout.split('\n').filter(Boolean);
  if (ids.length) await run('podman', ['rmi', '--force', '--', ...new Set(ids)], { env, allowFail: true });
}

/** A node's disk: a sparse file on a loop device, detached by name on exit (also on Ctrl-C). */
export function nodeDisk(dir: string, index: number, bytes: number): Promise<LoopDevice> {
  return attachLoop(dir, `node-${index}`, bytes);
}

/** What the agent's log says about where it pulled from (the records naming a source or mirror). */
export async function sourceLines(dir: string): Promise<string[]> {
  const log = await readFile(join(dir, 'agent.log'), 'utf8').catch(() => '');
  return log.split('\n').filter((l) => /mirror|fall(ing)? ?back|source/i.test(l)).slice(-8);
}
