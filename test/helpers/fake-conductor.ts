/**
 * A real HTTP(S) server on 127.0.0.1 port 0 that behaves like the Ironic API towards a ramdisk:
 * `GET /` (versions), `GET /v1/lookup`, `POST /v1/heartbeat/<node>`, with the checks the real
 * API and conductor make (version gates, token, callback URL and agent_verify_ca pinning,
 * require_tls) and Ironic's error body `{"error_message": "{\"faultstring\": …}"}`.
 *
 * It also keeps what the conductor keeps (`agentUrl`, `agentVerifyCa`, the token), so tests can
 * drive the agent's command API back over HTTPS with `callAgent()`, trusting only the
 * certificate the agent sent — exactly what a conductor does with `agent_verify_ca`.
 *
 * `startStep()` / `awaitStep()` wait for an in-band deploy or clean step the way Ironic ≥ 29
 * does (ipa-protocol.md §2.9): after each accepted heartbeat it reads `GET /v1/commands/` and
 * decides from the last command alone; an empty list (or only `get_*_steps`) means a freshly
 * booted agent, and the conductor goes on to the next step.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { EventEmitter, once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

export interface FakeConductorOptions {
  /** Highest API microversion announced (default 1.96). */
  maxVersion?: string;
  nodeUuid?: string;
  /** MACs of the node's ports (default one). */
  macs?: string[];
  heartbeatTimeout?: number;
  /** The token issued at the first lookup (default 43 random url-safe characters). */
  token?: string;
  /** The token was pre-generated (virtual media): every lookup, even the first, gets "******". */
  tokenAlreadyIssued?: boolean;
  /** Answer the first lookups with these statuses, in order (e.g. [404, 409]). */
  lookupScript?: number[];
  /** Answer the first `GET /` (version discovery) with these statuses, in order (e.g. [503]). */
  rootScript?: number[];
  /** `[agent]require_tls` (default true, as Ironic ≥ 26). */
  requireTls?: boolean;
  /** Serve HTTPS with this certificate. */
  tls?: { certPem: string; keyPem: string };
  /** Extra or overriding `config` keys in the lookup reply. */
  config?: Record<string, unknown>;
}

export interface RecordedRequest {
  at: number;
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: unknown;
  status: number;
  /** The faultstring sent back, for non-2xx answers. */
  error?: string;
}

export interface AgentCall {
  method?: 'GET' | 'POST';
  /** e.g. `/v1/commands/`; the token is added as `?agent_token=` like the conductor does. */
  path: string;
  query?: Record<string, string>;
  body?: unknown;
  /** Leave the token out (to test 401s). */
  withoutToken?: boolean;
}

/** A command result as the agent lists it. */
export interface WireCommand {
  id: string;
  command_name: string;
  command_status: string;
  command_error: { type: string; code: number; message: string; details: string } | null;
  command_result: any;
}

/** What the conductor decided about the step it waited for, after a heartbeat. */
export interface StepDecision {
  /**
   * `succeeded` / `failed`: the last command is this step's `execute_*_step`, finished;
   * `version-mismatch`: it asks for a steps refresh; `freshly-booted`: the list was empty (or
   * only `get_*_steps`), so the conductor takes the agent for a new one and goes on.
   */
  outcome: 'succeeded' | 'failed' | 'version-mismatch' | 'freshly-booted';
  /** The last command it looked at (none for an empty list). */
  command: WireCommand | undefined;
  /** When the heartbeat that led to the decision arrived, and when the decision was made. */
  heartbeatAt: number;
  decidedAt: number;
}

interface WaitedStep {
  iface: 'deploy' | 'clean';
  step: string;
  polling: boolean;
  decide(decision: StepDecision): void;
}

type Version = [number, number];
const parseVersion = (v: string): Version | undefined => {
  const m = /^(\d+)\.(\d+)$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
};
const cmp = (a: Version, b: Version) => (a[0] - b[0]) || (a[1] - b[1]);

export class FakeConductor {
  readonly nodeUuid: string;
  readonly token: string;
  readonly macs: string[];
  readonly requests: RecordedRequest[] = [];
  /** What the conductor stored from accepted heartbeats (driver_internal_info). */
  agentUrl: string | undefined;
  agentVerifyCa: string | undefined;
  agentVersion: string | undefined;
  agentStatus: string | undefined;
  agentStatusMessage: string | undefined;
  url = '';
  maxVersion: string;
  requireTls: boolean;
  private tokenIssued: boolean;
  private readonly lookupScript: number[];
  private readonly rootScript: number[];
  private heartbeatScript: { status: number; message: string }[] = [];
  private waited: WaitedStep | undefined;
  private readonly events = new EventEmitter();
  private server: Server | undefined;
  private agentDispatcher: Agent | undefined;

  constructor(private readonly options: FakeConductorOptions = {}) {
    this.nodeUuid = options.nodeUuid ?? randomUUID();
    this.token = options.token ?? randomBytes(32).toString('base64url'); // 43 chars, like token_urlsafe()
    this.macs = (options.macs ?? ['52:54:00:12:34:56']).map((m) => m.toLowerCase());
    this.maxVersion = options.maxVersion ?? '1.96';
    this.requireTls = options.requireTls ?? true;
    this.tokenIssued = options.tokenAlreadyIssued ?? false;
    this.lookupScript = [...(options.lookupScript ?? [])];
    this.rootScript = [...(options.rootScript ?? [])];
  }

  get lookups(): RecordedRequest[] { return this.requests.filter((r) => r.path === '/v1/lookup'); }
  get heartbeats(): RecordedRequest[] { return this.requests.filter((r) => r.path.startsWith('/v1/heartbeat/')); }
  get acceptedHeartbeats(): RecordedRequest[] { return this.heartbeats.filter((r) => r.status === 202); }

  async start(): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = this.options.tls ? createHttpsServer({ cert: this.options.tls.certPem, key: this.options.tls.keyPem }, handler) : createHttpServer(handler);
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    const { port } = this.server.address() as AddressInfo;
    this.url = `${this.options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    return this;
  }

  /** The next `count` heartbeats answer `status` with `message`. */
  failHeartbeats(count: number, status = 500, message = 'Internal Server Error'): void {
    for (let i = 0; i < count; i++) this.heartbeatScript.push({ status, message });
  }

  /** Resolves with the next heartbeat request (any status) recorded from now on. */
  nextHeartbeat(timeoutMs = 5000): Promise<RecordedRequest> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no heartbeat within ${timeoutMs} ms`)), timeoutMs);
      this.events.once('heartbeat', (r: RecordedRequest) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  /**
   * Posts `<iface>.execute_<iface>_step` (wait=false) as Ironic does, then waits for it like
   * `awaitStep()`. Rejects when the agent does not answer 200.
   */
  async startStep(iface: 'deploy' | 'clean', step: string, options: { args?: Record<string, unknown>; node?: Record<string, unknown>; ports?: unknown[] } = {}): Promise<{ command: WireCommand; decision: Promise<StepDecision> }> {
    const decision = this.awaitStep(iface, step);
    const res = await this.callAgent({
      method: 'POST', path: '/v1/commands/', query: { wait: 'false' },
      body: {
        name: `${iface}.execute_${iface}_step`,
        params: {
          step: { interface: iface, step, args: options.args ?? {} },
          node: { uuid: this.nodeUuid, properties: {}, instance_info: {}, driver_internal_info: {}, ...options.node },
          ports: options.ports ?? [],
          [`${iface}_version`]: { bootc_agent_hardware_manager: '1.0' },
        },
      },
    });
    if (res.status !== 200) {
      this.waited = undefined;
      throw new Error(`${iface}.execute_${iface}_step ${step}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    }
    return { command: res.body as WireCommand, decision };
  }

  /**
   * The conductor is in DEPLOYWAIT/CLEANWAIT for `step` (posted earlier, by `startStep` or by a
   * test): from the next accepted heartbeat on it reads the command list and decides, as Ironic
   * ≥ 29's `process_next_step` does. Resolves with that decision.
   */
  awaitStep(iface: 'deploy' | 'clean', step: string): Promise<StepDecision> {
    return new Promise((resolve) => {
      this.waited = { iface, step, polling: false, decide: (d) => { this.waited = undefined; resolve(d); } };
    });
  }

  // One look at the command list per accepted heartbeat, never two at once; an agent that does
  // not answer is asked again at its next heartbeat.
  private async pollStep(heartbeatAt: number): Promise<void> {
    const waited = this.waited;
    if (!waited || waited.polling) return;
    waited.polling = true;
    try {
      const res = await this.callAgent({ path: '/v1/commands/' }).catch(() => undefined);
      if (res?.status !== 200) return;
      const commands = (res.body as { commands: WireCommand[] }).commands;
      const decide = (outcome: StepDecision['outcome'], command: WireCommand | undefined) => waited.decide({ outcome, command, heartbeatAt, decidedAt: Date.now() });
      if (commands.every((c) => c.command_name === `get_${waited.iface}_steps`)) return decide('freshly-booted', commands.at(-1));
      const last = commands.at(-1)!;
      if (last.command_name !== `execute_${waited.iface}_step` || last.command_status === 'RUNNING') return;
      if (last.command_status === 'FAILED') return decide('failed', last);
      if (last.command_status.endsWith('VERSION_MISMATCH')) return decide('version-mismatch', last);
      const done = last.command_result?.[`${waited.iface}_step`] as { interface?: string; step?: string } | undefined;
      if (last.command_status === 'SUCCEEDED' && done?.interface === waited.iface && done.step === waited.step) decide('succeeded', last);
    } finally {
      waited.polling = false;
    }
  }

  /** Calls the agent back at the recorded callback URL, trusting only its agent_verify_ca, TLS ≥ 1.3. */
  async callAgent(call: AgentCall): Promise<{ status: number; body: unknown }> {
    if (!this.agentUrl) throw new Error('no heartbeat recorded yet: agent URL unknown');
    const url = new URL(`${this.agentUrl}${call.path}`);
    for (const [k, v] of Object.entries(call.query ?? {})) url.searchParams.set(k, v);
    if (!call.withoutToken) url.searchParams.set('agent_token', this.token);
    this.agentDispatcher ??= new Agent({ connect: { ca: this.agentVerifyCa, minVersion: 'TLSv1.3', rejectUnauthorized: true } });
    const res = await request(url, {
      dispatcher: this.agentDispatcher,
      method: call.method ?? (call.body === undefined ? 'GET' : 'POST'),
      headers: call.body === undefined ? {} : { 'content-type': 'application/json' },
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  }

  async close(): Promise<void> {
    await this.agentDispatcher?.close();
    if (!this.server) return;
    const server = this.server;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    const record: RecordedRequest = {
      at: Date.now(), method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams),
      headers: req.headers, body: undefined, status: 0,
    };
    let reply: { status: number; body?: unknown; error?: string };
    try {
      record.body = raw ? JSON.parse(raw) : undefined;
      reply = this.route(record);
    } catch {
      reply = { status: 400, error: 'The request body is not valid JSON' };
    }
    record.status = reply.status;
    if (reply.error !== undefined) record.error = reply.error;
    this.requests.push(record);
    const body = reply.error !== undefined
      ? { error_message: JSON.stringify({ faultcode: reply.status < 500 ? 'Client' : 'Server', faultstring: reply.error, debuginfo: null }) }
      : reply.body;
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(reply.status, { 'content-type': 'application/json', 'openstack-request-id': `req-${randomUUID()}` });
    res.end(text);
    if (record.path.startsWith('/v1/heartbeat/')) {
      this.events.emit('heartbeat', record);
      if (record.status === 202 && this.waited) void this.pollStep(record.at);
    }
  }

  // Ironic's version handling: no header means the minimum (1.1); above the maximum is 406.
  private requestedVersion(r: RecordedRequest): Version | { status: number; error: string } {
    const header = r.headers['x-openstack-ironic-api-version'];
    const max = parseVersion(this.maxVersion)!;
    if (header === undefined) return [1, 1];
    if (header === 'latest') return max;
    const v = parseVersion(String(header));
    if (!v) return { status: 400, error: `Invalid value for X-OpenStack-Ironic-API-Version header: ${header}` };
    if (cmp(v, max) > 0) return { status: 406, error: `Version ${header} was requested but the maximum version supported by this service is ${this.maxVersion}` };
    return v;
  }

  private route(r: RecordedRequest): { status: number; body?: unknown; error?: string } {
    if (r.method === 'GET' && r.path === '/') {
      const scripted = this.rootScript.shift();
      if (scripted !== undefined) return { status: scripted, error: 'Service Unavailable' };
      const v1 = { id: 'v1', links: [{ href: `${this.url}/v1/`, rel: 'self' }], status: 'CURRENT', min_version: '1.1', version: this.maxVersion };
      return { status: 200, body: { name: 'OpenStack Ironic API', description: 'fake', versions: [v1], default_version: v1 } };
    }
    if (r.method === 'GET' && r.path === '/v1/lookup') return this.lookup(r);
    if (r.method === 'POST' && r.path.startsWith('/v1/heartbeat/')) return this.heartbeat(r);
    return { status: 404, error: 'The resource could not be found.' };
  }

  private lookup(r: RecordedRequest): { status: number; body?: unknown; error?: string } {
    const version = this.requestedVersion(r);
    if (!Array.isArray(version)) return version;
    if (cmp(version, [1, 22]) < 0) return { status: 404, error: 'The resource could not be found.' };
    if (cmp(parseVersion(this.maxVersion)!, [1, 62]) >= 0 && cmp(version, [1, 62]) < 0) {
      return { status: 400, error: `fake conductor: lookup must ask for API version >= 1.62 (got ${version.join('.')})` };
    }
    const scripted = this.lookupScript.shift();
    if (scripted !== undefined) {
      return { status: scripted, error: scripted === 409 ? `Node ${this.nodeUuid} is locked by host fake, please retry after the current operation is completed.` : 'Not found' };
    }
    const addresses = (r.query.addresses ?? '').split(',').map((a) => a.trim().toLowerCase()).filter((a) => /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(a));
    const uuid = r.query.node_uuid;
    if (addresses.length === 0 && !uuid) return { status: 400, error: 'Incomplete lookup request: at least one valid MAC address or node UUID is required.' };
    const found = uuid ? uuid === this.nodeUuid : addresses.some((a) => this.macs.includes(a));
    if (!found) return { status: 404, error: 'Not found' };
    let token: string | null = null;
    if (cmp(version, [1, 62]) >= 0) {
      token = this.tokenIssued ? '******' : this.token;
      this.tokenIssued = true;
    }
    return {
      status: 200,
      body: {
        node: { uuid: this.nodeUuid, properties: { cpu_arch: 'x86_64' }, instance_info: {}, driver_internal_info: {}, links: [] },
        config: {
          heartbeat_timeout: this.options.heartbeatTimeout ?? 300,
          metrics: { backend: 'noop' },
          agent_token: token,
          agent_token_required: true,
          tls_min_version: '1.3',
          tls_cipher_suites: null,
          permitted_image_formats: ['raw', 'gpt', 'qcow2', 'iso'],
          ...this.options.config,
        },
      },
    };
  }

  // The API controller's checks first, then the conductor's (IR ramdisk.py, manager.py heartbeat).
  private heartbeat(r: RecordedRequest): { status: number; error?: string } {
    const version = this.requestedVersion(r);
    if (!Array.isArray(version)) return version;
    if (cmp(version, [1, 22]) < 0) return { status: 404, error: 'The resource could not be found.' };
    if (this.nodeUuid !== decodeURIComponent(r.path.slice('/v1/heartbeat/'.length))) return { status: 404, error: 'Node could not be found.' };
    if (!String(r.headers['content-type'] ?? '').startsWith('application/json')) return { status: 415, error: 'fake conductor: heartbeat body must be application/json' };
    const body = (r.body ?? {}) as Record<string, unknown>;
    const known = ['callback_url', 'agent_token', 'agent_version', 'agent_verify_ca', 'agent_status', 'agent_status_message'];
    const unknown = Object.keys(body).filter((k) => !known.includes(k));
    if (unknown.length > 0) return { status: 400, error: `Unknown arguments: "${unknown.join(', ')}"` };
    for (const k of known) if (k in body && typeof body[k] !== 'string') return { status: 400, error: `Argument "${k}" must be a string` };
    if (typeof body.callback_url !== 'string') return { status: 400, error: 'Missing argument: "callback_url"' };
    if (body.agent_version !== undefined && cmp(version, [1, 36]) < 0) return { status: 400, error: 'Field "agent_version" not recognised' };
    if ((body.agent_status !== undefined || body.agent_status_message !== undefined) && cmp(version, [1, 72]) < 0) {
      return { status: 400, error: 'Fields "agent_status" and "agent_status_message" not recognised.' };
    }
    if (body.agent_verify_ca !== undefined && cmp(version, [1, 68]) < 0) return { status: 400, error: 'Field "agent_verify_ca" not recognised in this version' };
    let scheme: string;
    try {
      scheme = new URL(body.callback_url).protocol;
    } catch {
      return { status: 400, error: 'An issue with the supplied "callback_url" has been detected.' };
    }
    if (!scheme.includes('http')) return { status: 400, error: 'An issue with the supplied "callback_url" has been detected.' };
    if (this.agentUrl !== undefined && this.agentUrl !== body.callback_url) return { status: 400, error: 'Detected change in ramdisk provided "callback_url"' };
    if (body.agent_token === undefined) return { status: 400, error: 'Agent token is required for heartbeat processing.' };
    if (body.agent_status !== undefined && !['start', 'end', 'error'].includes(body.agent_status as string)) {
      return { status: 400, error: 'Agent status is invalid. Valid states are start,end,error.' };
    }
    const scripted = this.heartbeatScript.shift();
    if (scripted) return { status: scripted.status, error: scripted.message };
    if (!this.tokenIssued || body.agent_token !== this.token) return { status: 400, error: 'Invalid or missing agent token received.' };
    if (this.requireTls && scheme !== 'https:') return { status: 400, error: 'TLS is required by configuration, but the agent uses plain HTTP' };
    if (body.agent_verify_ca !== undefined && this.agentVerifyCa !== undefined && body.agent_verify_ca !== this.agentVerifyCa) {
      return { status: 400, error: 'Detected change in ramdisk provided "agent_verify_ca"' };
    }
    this.agentUrl = body.callback_url;
    if (body.agent_verify_ca !== undefined) this.agentVerifyCa = body.agent_verify_ca as string;
    this.agentVersion = body.agent_version as string | undefined;
    this.agentStatus = body.agent_status as string | undefined;
    this.agentStatusMessage = body.agent_status_message as string | undefined;
    return { status: 202 };
  }
}

/** Starts a fake conductor; remember `t.after(() => conductor.close())`. */
export function startFakeConductor(options: FakeConductorOptions = {}): Promise<FakeConductor> {
  return new FakeConductor(options).start();
}

/**
 * The MAC addresses of this machine's interfaces, as the agent reports them at lookup: for
 * starting a real agent process against the fake conductor (`{ macs }`). Empty when there is none.
 */
export async function localMacAddresses(): Promise<string[]> {
  const macs: string[] = [];
  for (const name of await readdir('/sys/class/net').catch(() => [] as string[])) {
    const mac = (await readFile(`/sys/class/net/${name}/address`, 'utf8').catch(() => '')).trim().toLowerCase();
    if (/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) && mac !== '00:00:00:00:00:00') macs.push(mac);
  }
  return macs;
}
