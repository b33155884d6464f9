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
  // `on`, not `once`: see stopOnSignals.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
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

  const stop = stopOnSignals(log, config.shutdown_timeout);
  let code = 0;
  try {
    await agent.start(stop.signal);
    await agent.finished(stop.signal);
  } catch (err) {
    const agentError = toAgentError(err);
    if (!(stop.signal.aborted && agentError.code === 'CANCELLED')) {
      log.fatal({ err: agentError, details: agentError.details }, 'agent failed');
      process.stderr.write(`bootc-agent: ${describeError(agentError)}\n`);
      code = 1;
    }
  }
  await agent.stop(stop.signal.aborted ? `the agent stopped on ${String(stop.signal.reason)}` : undefined).catch((err: unknown) => {
    log.error({ err }, 'stopping the agent failed');
    code = 1;
  });
  return code;
}

/**
 * SIGTERM and SIGINT abort the returned controller (reason: the signal's name); the shutdown
 * that follows must end within `timeoutSeconds`, else the process exits 1 at once. The
 * listeners stay registered until the process exits: execa's `cleanup` option (kill the
 * children when the agent exits) uses signal-exit, which re-raises a signal — killing the agent
 * with 143 before it cancelled anything — when it finds itself the signal's only listener.
 */
function stopOnSignals(log: ReturnType<typeof createLogger>, timeoutSeconds: number): AbortController {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      log.warn({ signal }, 'already stopping');
      return;
    }
    log.info({ signal, timeout_s: timeoutSeconds }, 'stopping: cancelling the running command, then heartbeats and the API');
    stop.abort(signal);
    setTimeout(() => {
      log.fatal({ signal, timeout_s: timeoutSeconds }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, timeoutSeconds * 1000).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return stop;
}

// undici parses HTTP with llhttp compiled to WebAssembly. V8 tiers its hot functions up with
// TurboFan on a worker thread, and the zone memory of that one huge state-machine function
// stays in the worker's malloc arena for good (docs/benchmarks.md, idle memory). Liftoff (V8's
// baseline wasm compiler) is plenty for parsing HTTP headers and chunk framing. Set before the
// first connection, which is when undici compiles the module.
setFlagsFromString('--liftoff-only');

process.exitCode = await main();
