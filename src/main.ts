/**
 * Entry point: flags, configuration, logger, signals and exit codes. Everything else is built
 * by `createAgent` (src/agent.ts).
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { createAgent } from './agent.ts';
import { formatHelp, loadConfig, parseFlags, readConfigFile } from './config/index.ts';
import { describeError, toAgentError } from './errors.ts';
import { createExecaRunner } from './exec/index.ts';
import { createLogger } from './log/index.ts';
import { createSystemPowerController } from './system/index.ts';
import { AGENT_VERSION } from './version.ts';

const DEFAULT_CONFIG_FILE = '/etc/bootc-agent/config.json';

// `bootc-agent fetch …` is a one-shot tool, dispatched before the agent's own flags are parsed.
// Imported here, not at the top: the agent never runs its module code.
async function fetchCommand(args: string[]): Promise<number> {
  const { runFetchCli } = await import('./cli/index.ts');
  const stop = new AbortController();
  const onSignal = () => stop.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await runFetchCli(args, { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: stop.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function main(): Promise<number> {
  if (process.argv[2] === 'fetch') return fetchCommand(process.argv.slice(3));
  let flags: ReturnType<typeof parseFlags>;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bootc-agent: ${(err as Error).message}\n${formatHelp()}\n`);
    return 2;
  }
  if (flags.values.help) {
    process.stdout.write(`${formatHelp()}\n\nOther commands:\n  bootc-agent fetch SOURCE --output FILE|DEVICE [options]   write a disk image (see bootc-agent fetch --help)\n`);
    return 0;
  }
  if (flags.values.version) {
    process.stdout.write(`${AGENT_VERSION}\n`);
    return 0;
  }

  let config;
  try {
    const cmdlineFile = (flags.values['cmdline-file'] as string | undefined) ?? '/proc/cmdline';
    const configFile = (flags.values.config as string | undefined) ?? process.env.BOOTC_AGENT_CONFIG;
    const filePath = configFile ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
    config = loadConfig({
      cmdline: existsSync(cmdlineFile) ? readFileSync(cmdlineFile, 'utf8') : '',
      file: filePath ? readConfigFile(filePath, configFile !== undefined) : undefined,
      ...(filePath ? { filePath } : {}),
      env: process.env,
      overrides: flags.overrides,
    });
  } catch (err) {
    process.stderr.write(`bootc-agent: ${describeError(toAgentError(err))}\n`);
    return 2;
  }

  const log = createLogger({ level: config.debug ? 'debug' : 'info', file: config.log_file ?? `${config.state_dir}/agent.log` });
  const runner = createExecaRunner();
  const agent = createAgent({ config, log, runner, power: createSystemPowerController(runner, log), version: AGENT_VERSION });

  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'stopping');
      stop.abort();
    });
  }
  try {
    await agent.start();
    await agent.finished(stop.signal);
    await agent.stop();
    return 0;
  } catch (err) {
    const agentError = toAgentError(err);
    log.fatal({ err: agentError, details: agentError.details }, 'agent failed');
    process.stderr.write(`bootc-agent: ${describeError(agentError)}\n`);
    await agent.stop().catch(() => undefined);
    return 1;
  }
}

// undici parses HTTP with llhttp compiled to WebAssembly. V8 tiers its hot functions up with
// TurboFan on a worker thread, and the zone memory of that one huge state-machine function
// stays in the worker's malloc arena for good (docs/benchmarks.md, idle memory). Liftoff (V8's
// baseline wasm compiler) is plenty for parsing HTTP headers and chunk framing. Set before the
// first connection, which is when undici compiles the module.
setFlagsFromString('--liftoff-only');

process.exitCode = await main();
