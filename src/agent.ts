/**
 * The composition root: builds every service from injected dependencies. `start()` follows
 * IPA's order — state → API version → lookup → advertise address → certificate → listen →
 * heartbeats — and `stop()` undoes it. Tests build the same agent with fakes.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { createRouter, startApiServer, type ApiServer } from './api/index.ts';
import {
  CommandExecutor, createCleanSteps, createMachineCommands, createStepCommands, StepRegistry, type Progress, type StepDefinition,
} from './commands/index.ts';
import type { Config } from './config/index.ts';
import { buildCallbackUrl, createHeartbeater, createIronicClient, findAdvertiseAddress, type Heartbeater, type IronicClient } from './conductor/index.ts';
import type { BootcStepDeps } from './deploy/bootc-step.ts';
import { createLazyBootcStep } from './deploy/step.ts';
import { createStandbyImageCommands, createWriteImageStep } from './image/commands.ts';
import type { WriteImageDeps } from './image/step.ts';
import { AgentError } from './errors.ts';
import type { CommandRunner } from './exec/index.ts';
import { collectInventory, createHardwareCommands, listNetworkInterfaces } from './hardware/index.ts';
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
  start(): Promise<void>;
  /** Resolves when `signal` aborts or the agent locked itself down. */
  finished(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  /** After start: where the API listens and what the conductor is told. */
  readonly listenPort: number;
  readonly callbackUrl: string;
  readonly certificatePem: string | undefined;
  readonly token: string | undefined;
  readonly executor: CommandExecutor;
}

// A short human summary of a command's progress for the heartbeat's agent_status_message.
function statusMessage(command: string, progress: Progress | undefined): string {
  if (!progress) return `running ${command}`;
  const bytes = progress.bytes_total ? ` (${Math.floor(((progress.bytes_done ?? 0) * 100) / progress.bytes_total)}% of ${Math.ceil(progress.bytes_total / 1048576)} MiB)` : '';
  return `${command}: ${progress.phase}: ${progress.message}${bytes}`.slice(0, 255);
}

export function createAgent(deps: AgentDeps): Agent {
  const { config, runner } = deps;
  const log = deps.log;
  const startedAt = Date.now() / 1000;
  const store: StateStore = createStateStore(config.state_dir);
  const shutdown = new AbortController();
  const lockedDown = new AbortController();
  let token: string | undefined;
  let server: ApiServer | undefined;
  let client: IronicClient | undefined;
  let heartbeater: Heartbeater | undefined;
  let callbackUrl = '';
  let certificatePem: string | undefined;
  let partitionUuids: Record<string, string> = {};
  let skipBmcDetect = false;
  // Ironic keeps the last non-empty agent_status_message it received, so once a command whose
  // progress went out in a heartbeat finishes, the next heartbeats say how it ended instead of
  // leaving its last progress line on the node.
  let progressSentFor: string | undefined;
  let endMessage: string | undefined;

  // The OCI client, the deploy steps' code and the config-drive writer load when a step first
  // needs them (dynamic imports): an agent that only heartbeats never builds them.
  let ociClient: Promise<OciClient> | undefined;
  const getOci = (): Promise<OciClient> => (ociClient ??= deps.oci
    ? Promise.resolve(deps.oci)
    : import('./oci/index.ts').then((m) => m.createOciClient({ log: log.child({ component: 'oci' }) })));
  const writeConfigDrive: WriteImageDeps['writeConfigDrive'] = async (device, value, options) => {
    const configdrive = await import('./configdrive/index.ts');
    return { ...(await configdrive.writeConfigDrive(device, value, { runner, ...options })) };
  };
  const recordPartitionUuids = (uuids: Record<string, string>): void => { partitionUuids = uuids; };

  const executor = new CommandExecutor({
    log,
    onFinished: (result) => {
      if (progressSentFor) endMessage = `${progressSentFor}: ${result.command_status}`;
      progressSentFor = undefined;
      heartbeater?.force();
    },
  });
  const getNode = async () => (await store.readNode())?.node;
  const imageDeps = async (): Promise<WriteImageDeps> => ({ runner, config, oci: await getOci(), writeConfigDrive, recordPartitionUuids, getNode });
  const bootcDeps = async (): Promise<BootcStepDeps> => ({ runner, config, oci: await getOci(), writeConfigDrive, recordPartitionUuids });
  const steps = new StepRegistry();
  steps.register([
    ...createCleanSteps({ runner, includeLoopDevices: config.include_loop_devices }),
    createLazyBootcStep(bootcDeps),
    createWriteImageStep(imageDeps),
    ...(deps.extraSteps ?? []),
  ]);
  const inventory = (signal: AbortSignal) => collectInventory({
    runner, signal, log, bootif: config.bootif, includeLoop: config.include_loop_devices, skipBmcDetect,
  });
  executor.register([
    ...createStepCommands(steps),
    ...createStandbyImageCommands(imageDeps, getNode),
    ...createHardwareCommands({ runner, bootif: config.bootif, includeLoop: config.include_loop_devices }),
    ...createMachineCommands({
      power: deps.power,
      collectLogs: (signal) => collectSystemLogs({
        runner, log, signal, agentLogFile: config.log_file ?? `${config.state_dir}/agent.log`,
        secrets: () => (token ? [token] : []),
      }),
      lockdown: async () => {
        log.warn('locking down: heartbeats stop and the API closes');
        await heartbeater?.stop();
        setImmediate(() => void server?.close().then(() => lockedDown.abort()));
      },
      partitionUuids: () => partitionUuids,
      ...(deps.replyGraceMs === undefined ? {} : { replyGraceMs: deps.replyGraceMs }),
    }),
  ]);

  // The token for a standalone agent: configured, persisted, or made here and persisted.
  async function standaloneToken(known: string | undefined): Promise<string> {
    if (known) return known;
    const made = randomBytes(32).toString('base64url');
    await store.writeToken(made);
    log.warn({ path: `${config.state_dir}/token` }, 'no conductor and no agent_token: generated a token');
    return made;
  }

  async function loadTls(advertiseHost: string, minVersion: string | undefined) {
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

  async function start(): Promise<void> {
    if (config.hardware_initialization_delay > 0) await sleep(config.hardware_initialization_delay * 1000, undefined, { signal: shutdown.signal });
    const known = (await store.readToken()) ?? config.agent_token;
    let nodeUuid: string | undefined;
    let heartbeatTimeout = 300;
    let lookupTlsMin: string | undefined;
    let advertiseHost: string;

    if (config.api_url) {
      client = createIronicClient({ config, log, agentVersion: deps.version, ...(deps.ironicDispatcher ? { dispatcher: deps.ironicDispatcher } : {}) });
      // Version discovery happens inside the lookup loop, so an API that is not up yet is retried (IPA does the same).
      const macs = deps.lookupMacs ? await deps.lookupMacs() : (await listNetworkInterfaces({ log })).map((i) => i.mac_address).filter((m): m is string => Boolean(m));
      const found = await client.lookup({ macs, knownToken: known, signal: shutdown.signal });
      nodeUuid = found.node.uuid;
      token = found.token;
      heartbeatTimeout = Number(found.config.heartbeat_timeout ?? 300);
      lookupTlsMin = typeof found.config.tls_min_version === 'string' ? found.config.tls_min_version : undefined;
      skipBmcDetect = found.config.agent_skip_bmc_detect === true;
      if (token) await store.writeToken(token);
      await store.writeNode(found.node.uuid, found.node as Record<string, unknown>, found.config as Record<string, unknown>);
      advertiseHost = await findAdvertiseAddress({ config, runner, log, signal: shutdown.signal });
    } else {
      token = await standaloneToken(known);
      advertiseHost = config.advertise_host ?? '127.0.0.1';
      log.warn('no api_url: serving the API without lookup or heartbeats (standalone)');
    }

    const tls = await loadTls(advertiseHost, lookupTlsMin);
    certificatePem = tls?.certPem;
    const router = createRouter({
      executor, log, agentVersion: deps.version, startedAt,
      getToken: () => token,
      getInventory: inventory,
    });
    server = await startApiServer({ router, log, host: config.listen_host, port: config.listen_port, maxBodyBytes: config.max_request_body_bytes, ...(tls ? { tls } : {}) });

    // The callback URL must never change within one ramdisk boot: the conductor refuses that.
    const persisted = await store.readCallbackUrl();
    const fresh = buildCallbackUrl(tls ? 'https' : 'http', advertiseHost, config.advertise_port ?? server.address.port);
    callbackUrl = persisted && persisted === fresh ? persisted : fresh;
    if (persisted && persisted !== fresh) log.warn({ persisted, now: fresh }, 'callback URL changed since the last start (new address or port)');
    await store.writeCallbackUrl(callbackUrl);
    log.info({ callback_url: callbackUrl, node_uuid: nodeUuid }, 'agent ready');

    if (client && nodeUuid) {
      const uuid = nodeUuid;
      heartbeater = createHeartbeater({
        client, log,
        getState: () => {
          const current = executor.current();
          if (current) progressSentFor = current.name;
          const message = current ? statusMessage(current.name, current.progress) : endMessage;
          return {
            nodeUuid: uuid, callbackUrl, token, verifyCaPem: certificatePem, heartbeatTimeout,
            ...(message ? { statusMessage: message } : {}),
          };
        },
      });
      heartbeater.start(shutdown.signal);
    }
  }

  async function stop(): Promise<void> {
    shutdown.abort();
    await heartbeater?.stop();
    await executor.abortRunning('the agent is stopping');
    await server?.close();
    await client?.close();
    const oci = deps.oci ?? (ociClient ? await ociClient.catch(() => undefined) : undefined);
    await oci?.close();
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
    get token() { return token; },
    executor,
  };
}
