/**
 * The composition root: builds every service from injected dependencies. `start()` first
 * recovers from a command the previous run was killed in (src/commands/recovery.ts), then
 * follows IPA's order — state → API version → lookup → advertise address → certificate →
 * listen → heartbeats — and `stop()` undoes it, cancelling a running command first. Tests
 * build the same agent with fakes.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { createRouter, startApiServer, type ApiServer } from './api/index.ts';
import type { BootcStepDeps } from './bootc/deps.ts';
import { createBootcStep } from './bootc/register.ts';
import {
  CommandExecutor, createCleanSteps, createMachineCommands, createStepCommands, JournalFile, recoverInterruptedCommand, StepRegistry,
  type StepDefinition,
} from './commands/index.ts';
import { MIRRORS_DROP_IN, parseRegistryMirrors, type Config } from './config/index.ts';
import {
  buildCallbackUrl, createHeartbeater, createIronicClient, createStatusMessages, findAdvertiseAddress, type Heartbeater, type IronicClient,
} from './conductor/index.ts';
import { AgentError, isAgentError } from './errors.ts';
import type { CommandRunner } from './exec/index.ts';
import { collectInventory, createHardwareCommands, listNetworkInterfaces } from './hardware/index.ts';
import { createStandbyImageCommands, createWriteImageStep } from './image/register.ts';
import type { WriteImageDeps } from './image/step.ts';
import { readCaFile } from './io/ca-file.ts';
import type { Logger } from './log/index.ts';
import type { OciClient } from './oci/index.ts';
import { createStateStore, loadOrCreateCertificate, type StateStore } from './state/index.ts';
import { collectSystemLogs, type PowerController } from './system/index.ts';

export interface AgentDeps {
  config: Readonly<Config>;
  log: Logger;
  runner: CommandRunner;
  power: PowerController;
  version: string;
  /** Test seams. */
  ironicDispatcher?: Dispatcher;
  oci?: OciClient;
  lookupMacs?: () => Promise<string[]>;
  replyGraceMs?: number;
  /** Extra deploy/clean steps registered with the built-in ones (tests, demos). */
  extraSteps?: readonly StepDefinition[];
}

export interface Agent {
  /** Rejects with CANCELLED when `signal` aborts before the agent is up (a stop during lookup). */
  start(signal?: AbortSignal): Promise<void>;
  /** Resolves when `signal` aborts or the agent locked itself down. */
  finished(signal: AbortSignal): Promise<void>;
  /**
   * Cancels the running command the way a cancel does (its step removes its containers, wipes
   * a written disk, removes its temporary files; its journal entry stays, naming `reason`),
   * refuses new ones, stops the heartbeats, then closes the API.
   */
  stop(reason?: string): Promise<void>;
  /** After start: where the API listens and what the conductor is told. */
  readonly listenPort: number;
  readonly callbackUrl: string;
  readonly certificatePem: string | undefined;
  readonly token: string | undefined;
  readonly executor: CommandExecutor;
}

/** What the commands read from the running agent, and what they ask of it. */
interface CommandHooks {
  getToken(): string | undefined;
  lockdown(): Promise<void>;
  onFinished(status: string): void;
}

// The OCI client, the deploy steps' code and the config-drive writer load when a step first
// needs them (dynamic imports): an agent that only heartbeats never builds them.
function lazyStepDeps(deps: AgentDeps, store: StateStore) {
  const { config, runner, log } = deps;
  let oci: Promise<OciClient> | undefined;
  let partitionUuids: Record<string, string> = {};
  const getOci = (): Promise<OciClient> => (oci ??= deps.oci
    ? Promise.resolve(deps.oci)
    : import('./oci/index.ts').then((m) => m.createOciClient({
      log: log.child({ component: 'oci' }),
      registriesConfDir: config.registries_conf_dir,
      certsDirs: [...new Set([config.registry_certs_dir, ...m.DEFAULT_CERTS_DIRS])],
    })));
  // Config-drive URLs are fetched with the same TLS settings as image URLs.
  const writeConfigDrive: WriteImageDeps['writeConfigDrive'] = async (device, value, options) => {
    const [configdrive, ca] = await Promise.all([import('./configdrive/index.ts'), readCaFile(config.ca_file)]);
    return { ...(await configdrive.writeConfigDrive(device, value, { runner, insecure: config.insecure, ca, ...options })) };
  };
  const recordPartitionUuids = (uuids: Record<string, string>): void => { partitionUuids = uuids; };
  const getNode = async () => (await store.readNode())?.node;
  const common = async () => ({ runner, config, oci: await getOci(), writeConfigDrive, recordPartitionUuids });
  return {
    getNode,
    partitionUuids: () => partitionUuids,
    image: async (): Promise<WriteImageDeps> => ({ ...(await common()), getNode }),
    bootc: (): Promise<BootcStepDeps> => common(),
    /** The OCI client, if one was built. */
    builtOci: async () => deps.oci ?? (oci ? await oci.catch(() => undefined) : undefined),
  };
}

function createCommands(deps: AgentDeps, stepDeps: ReturnType<typeof lazyStepDeps>, hooks: CommandHooks, journal: JournalFile): CommandExecutor {
  const { config, runner, log } = deps;
  const executor = new CommandExecutor({ log, journal, onFinished: (result) => hooks.onFinished(result.command_status) });
  const steps = new StepRegistry();
  steps.register([
    ...createCleanSteps({ runner, includeLoopDevices: config.include_loop_devices }),
    createBootcStep(stepDeps.bootc),
    createWriteImageStep(stepDeps.image),
    ...(deps.extraSteps ?? []),
  ]);
  executor.register([
    ...createStepCommands(steps),
    ...createStandbyImageCommands(stepDeps.image, stepDeps.getNode),
    ...createHardwareCommands({ runner, bootif: config.bootif, includeLoop: config.include_loop_devices }),
    ...createMachineCommands({
      power: deps.power,
      collectLogs: (signal) => collectSystemLogs({
        runner, log, signal, agentLogFile: config.log_file ?? `${config.state_dir}/agent.log`,
        secrets: () => { const token = hooks.getToken(); return token ? [token] : []; },
      }),
      lockdown: hooks.lockdown,
      partitionUuids: stepDeps.partitionUuids,
      ...(deps.replyGraceMs === undefined ? {} : { replyGraceMs: deps.replyGraceMs }),
    }),
  ]);
  return executor;
}

async function loadTls(deps: AgentDeps, store: StateStore, advertiseHost: string, minVersion: string | undefined) {
  const { config, log } = deps;
  if (config.advertise_protocol === 'http') return undefined;
  const tlsMin = minVersion === '1.3' || config.tls_min_version === '1.3' ? 'TLSv1.3' as const : 'TLSv1.2' as const;
  if (config.tls_cert_file && config.tls_key_file) {
    const [certPem, keyPem] = await Promise.all([readFile(config.tls_cert_file, 'utf8'), readFile(config.tls_key_file, 'utf8')]).catch((err: unknown) => {
      throw new AgentError('TLS_SETUP_FAILED', `Cannot read tls_cert_file/tls_key_file: ${(err as Error).message}`, { cause: err });
    });
    return { certPem, keyPem, minVersion: tlsMin };
  }
  const pair = await loadOrCreateCertificate(store, { advertiseHost, log });
  return { certPem: pair.certPem, keyPem: pair.keyPem, minVersion: tlsMin };
}

/** Who the agent is for the conductor: found by lookup, or standalone without one. */
interface Identity {
  token: string | undefined;
  advertiseHost: string;
  conductor?: { client: IronicClient; nodeUuid: string; heartbeatTimeout: number; tlsMin: string | undefined; skipBmcDetect: boolean };
}

async function lookUpIdentity(deps: AgentDeps, store: StateStore, signal: AbortSignal): Promise<Identity> {
  const { config, log, runner } = deps;
  const known = (await store.readToken()) ?? config.agent_token;
  if (!config.api_url) {
    log.warn('no api_url: serving the API without lookup or heartbeats (standalone)');
    return { token: await standaloneToken(deps, store, known), advertiseHost: config.advertise_host ?? '127.0.0.1' };
  }
  const client = createIronicClient({ config, log, agentVersion: deps.version, ...(deps.ironicDispatcher ? { dispatcher: deps.ironicDispatcher } : {}) });
  // Version discovery happens inside the lookup loop, so an API that is not up yet is retried (IPA does the same).
  const macs = deps.lookupMacs ? await deps.lookupMacs() : (await listNetworkInterfaces({ log })).map((i) => i.mac_address).filter((m): m is string => Boolean(m));
  const found = await client.lookup({ macs, knownToken: known, signal });
  if (found.token) await store.writeToken(found.token);
  await store.writeNode(found.node.uuid, found.node as Record<string, unknown>, found.config as Record<string, unknown>);
  return {
    token: found.token,
    advertiseHost: await findAdvertiseAddress({ config, runner, log, signal }),
    conductor: {
      client,
      nodeUuid: found.node.uuid,
      heartbeatTimeout: Number(found.config.heartbeat_timeout ?? 300),
      tlsMin: typeof found.config.tls_min_version === 'string' ? found.config.tls_min_version : undefined,
      skipBmcDetect: found.config.agent_skip_bmc_detect === true,
    },
  };
}

// The token for a standalone agent: configured, persisted, or made here and persisted.
async function standaloneToken(deps: AgentDeps, store: StateStore, known: string | undefined): Promise<string> {
  if (known) return known;
  const made = randomBytes(32).toString('base64url');
  await store.writeToken(made);
  deps.log.warn({ path: `${deps.config.state_dir}/token` }, 'no conductor and no agent_token: generated a token');
  return made;
}

// The callback URL must never change within one ramdisk boot: the conductor refuses that.
async function settleCallbackUrl(store: StateStore, log: Logger, fresh: string): Promise<string> {
  const persisted = await store.readCallbackUrl();
  if (persisted && persisted !== fresh) log.warn({ persisted, now: fresh }, 'callback URL changed since the last start (new address or port)');
  await store.writeCallbackUrl(fresh);
  return fresh;
}

/**
 * The `registry_mirrors` drop-in (and its CA copies) as this start's configuration says: written
 * anew, or removed, so that a drop-in of an earlier start never survives. The OCI code loads only
 * when there is something to write or remove.
 */
async function applyRegistryMirrors(config: Readonly<Config>, log: Logger): Promise<void> {
  const dropIn = join(config.registries_conf_dir, MIRRORS_DROP_IN);
  const stale = await access(dropIn).then(() => true, () => false);
  if (!config.registry_mirrors && !stale) return;
  const { writeMirrorsDropIn } = await import('./oci/mirrors.ts');
  const mirrors = parseRegistryMirrors(config.registry_mirrors ?? '');
  try {
    const written = await writeMirrorsDropIn({ dir: config.registries_conf_dir, fileName: MIRRORS_DROP_IN, certsDir: config.registry_certs_dir }, mirrors,
      'Written by bootc-agent at start from its registry_mirrors option; rewritten or removed at each start.');
    if (written) log.info({ path: written, mirrors: mirrors.map((m) => `${m.registry}=${m.mirror}`) }, 'registry mirrors configured');
    else log.info({ path: dropIn }, 'registry mirrors drop-in of an earlier start removed');
  } catch (err) {
    if (isAgentError(err)) throw err;
    throw new AgentError('REGISTRY_CONFIG_INVALID', `Cannot write the registry_mirrors drop-in ${dropIn}: ${(err as Error).message}`, { cause: err, details: { path: dropIn } });
  }
}

function throwIfStopping(signal: AbortSignal): void {
  if (signal.aborted) throw new AgentError('CANCELLED', 'The agent is stopping', { cause: signal.reason });
}

export function createAgent(deps: AgentDeps): Agent {
  const { config, log } = deps;
  const startedAt = Date.now() / 1000;
  const store: StateStore = createStateStore(config.state_dir);
  const shutdown = new AbortController();
  const lockedDown = new AbortController();
  const statusMessages = createStatusMessages();
  let identity: Identity | undefined;
  let server: ApiServer | undefined;
  let heartbeater: Heartbeater | undefined;
  let callbackUrl = '';
  let certificatePem: string | undefined;

  const stepDeps = lazyStepDeps(deps, store);
  const journal = new JournalFile(store, log);
  const executor = createCommands(deps, stepDeps, {
    getToken: () => identity?.token,
    lockdown: async () => {
      log.warn('locking down: heartbeats stop and the API closes');
      await heartbeater?.stop();
      setImmediate(() => void server?.close().then(() => lockedDown.abort()));
    },
    onFinished: (status) => {
      statusMessages.finished(status);
      heartbeater?.force();
    },
  }, journal);

  function startHeartbeats(conductor: NonNullable<Identity['conductor']>): Heartbeater {
    const beats = createHeartbeater({
      client: conductor.client, log,
      getState: () => {
        const message = statusMessages.next(executor.current());
        return {
          nodeUuid: conductor.nodeUuid, callbackUrl, token: identity?.token, verifyCaPem: certificatePem, heartbeatTimeout: conductor.heartbeatTimeout,
          ...(message ? { statusMessage: message } : {}),
        };
      },
    });
    beats.start();
    return beats;
  }

  async function start(signal?: AbortSignal): Promise<void> {
    const stopping = signal ? AbortSignal.any([shutdown.signal, signal]) : shutdown.signal;
    // Before anything listens: no new command may start on a disk an orphaned install still writes.
    const interrupted = await recoverInterruptedCommand({
      runner: deps.runner, log, journal, stateDir: config.state_dir, keep: [config.log_file ?? join(config.state_dir, 'agent.log')],
    });
    if (interrupted) {
      executor.adopt(interrupted);
      // Ironic keeps the last progress line it was sent until another message replaces it.
      statusMessages.ended(`${interrupted.command_name}: FAILED (the agent was stopped during it)`);
    }
    await applyRegistryMirrors(config, log);
    throwIfStopping(stopping);
    if (config.hardware_initialization_delay > 0) await sleep(config.hardware_initialization_delay * 1000, undefined, { signal: stopping });
    identity = await lookUpIdentity(deps, store, stopping);
    const tls = await loadTls(deps, store, identity.advertiseHost, identity.conductor?.tlsMin);
    certificatePem = tls?.certPem;
    const router = createRouter({
      executor, log, agentVersion: deps.version, startedAt, limits: config,
      getToken: () => identity?.token,
      getInventory: (signal) => collectInventory({
        runner: deps.runner, signal, log, bootif: config.bootif, includeLoop: config.include_loop_devices,
        skipBmcDetect: identity?.conductor?.skipBmcDetect ?? false,
      }),
    });
    throwIfStopping(stopping);
    server = await startApiServer({
      router, log, host: config.listen_host, port: config.listen_port, maxBodyBytes: config.max_request_body_bytes, limits: config, ...(tls ? { tls } : {}),
    });
    const port = config.advertise_port ?? server.address.port;
    callbackUrl = await settleCallbackUrl(store, log, buildCallbackUrl(tls ? 'https' : 'http', identity.advertiseHost, port));
    log.info({ callback_url: callbackUrl, node_uuid: identity.conductor?.nodeUuid }, 'agent ready');
    if (identity.conductor) heartbeater = startHeartbeats(identity.conductor);
  }

  async function stop(reason = 'the agent is stopping'): Promise<void> {
    shutdown.abort();
    await executor.abortRunning(reason);
    await heartbeater?.stop();
    await server?.close();
    await identity?.conductor?.client.close();
    await (await stepDeps.builtOci())?.close();
  }

  return {
    start,
    stop,
    finished: (signal) => new Promise<void>((resolve) => {
      if (signal.aborted || lockedDown.signal.aborted) return resolve();
      const done = () => resolve();
      signal.addEventListener('abort', done, { once: true });
      lockedDown.signal.addEventListener('abort', done, { once: true });
    }),
    get listenPort() { return server?.address.port ?? 0; },
    get callbackUrl() { return callbackUrl; },
    get certificatePem() { return certificatePem; },
    get token() { return identity?.token; },
    executor,
  };
}
