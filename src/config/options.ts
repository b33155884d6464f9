/**
 * Every configuration option, declared once: its file key, kernel command-line name,
 * environment variable, type, default and help. `--help`, the table of docs/configuration.md and the zod
 * schema are all generated from this list.
 * @module
 */
import { z } from 'zod';

export type OptionKind = 'string' | 'int' | 'number' | 'bool' | 'list' | 'enum' | 'url-list';

export interface OptionDef {
  /** snake_case name: the key in the JSON config file and in the frozen Config. */
  key: string;
  /** Kernel command-line word (IPA's spelling where IPA has the option). */
  cmdline?: string;
  kind: OptionKind;
  default?: string | number | boolean | readonly string[];
  choices?: readonly string[];
  min?: number;
  max?: number;
  help: string;
}

export const ENV_PREFIX = 'BOOTC_AGENT_';

export function envName(def: OptionDef): string {
  return ENV_PREFIX + def.key.toUpperCase();
}

/** The command-line flag, without its `--`. */
export function flagName(def: OptionDef): string {
  return def.key.replaceAll('_', '-');
}

export const OPTIONS = [
  { key: 'api_url', cmdline: 'ipa-api-url', kind: 'url-list', help: 'Ironic API URL(s), comma-separated; tried in order. Without it the agent serves its API but does not look up or heartbeat (standalone).' },
  { key: 'insecure', cmdline: 'ipa-insecure', kind: 'bool', default: false, help: 'Do not verify TLS certificates of the Ironic API.' },
  { key: 'ca_file', cmdline: 'bootc-agent-ca-file', kind: 'string', help: 'PEM file of extra CAs trusted for the Ironic API.' },
  { key: 'agent_token', cmdline: 'ipa-agent-token', kind: 'string', help: 'Pre-generated agent token (virtual media boot); kept when lookup answers "******".' },
  { key: 'global_request_id', cmdline: 'ipa-global-request-id', kind: 'string', help: 'Sent as X-OpenStack-Request-ID on every Ironic API request (req-<uuid>).' },
  { key: 'listen_host', cmdline: 'ipa-listen-host', kind: 'string', default: '::', help: 'Address the agent API binds to.' },
  { key: 'listen_port', cmdline: 'ipa-listen-port', kind: 'int', default: 9999, min: 0, max: 65535, help: 'Port the agent API binds to (0 picks a free port).' },
  { key: 'advertise_host', cmdline: 'ipa-advertise-host', kind: 'string', help: 'Host put in the callback URL; default: the source address of the route to the Ironic API.' },
  { key: 'advertise_port', cmdline: 'ipa-advertise-port', kind: 'int', min: 1, max: 65535, help: 'Port put in the callback URL; default: the port actually listened on.' },
  { key: 'advertise_protocol', cmdline: 'ipa-advertise-protocol', kind: 'enum', choices: ['https', 'http'], default: 'https', help: 'https (auto-generated self-signed certificate, sent as agent_verify_ca) or plain http.' },
  { key: 'network_interface', cmdline: 'ipa-network-interface', kind: 'string', help: 'Interface whose address is advertised, instead of the route to the Ironic API.' },
  { key: 'ip_lookup_attempts', cmdline: 'ipa-ip-lookup-attempts', kind: 'int', default: 6, min: 1, help: 'Attempts to find the address to advertise.' },
  { key: 'ip_lookup_sleep', cmdline: 'ipa-ip-lookup-timeout', kind: 'number', default: 10, min: 0, help: 'Seconds between those attempts.' },
  { key: 'lookup_timeout', cmdline: 'ipa-lookup-timeout', kind: 'number', default: 600, min: 1, help: 'Seconds to keep retrying lookup before the agent exits non-zero.' },
  { key: 'lookup_interval', cmdline: 'ipa-lookup-interval', kind: 'number', default: 1, min: 0.01, help: 'First lookup retry delay in seconds (jittered exponential back-off up to 60 s).' },
  { key: 'ironic_api_version', cmdline: 'ipa-ironic-api-version', kind: 'string', help: 'Pin the Ironic API microversion instead of discovering it (e.g. 1.68).' },
  { key: 'http_request_timeout', cmdline: 'ipa-http-request-timeout', kind: 'number', default: 30, min: 1, help: 'Timeout in seconds of each Ironic API request.' },
  { key: 'tls_min_version', cmdline: 'ipa-tls-min-version', kind: 'enum', choices: ['1.2', '1.3'], default: '1.2', help: 'Minimum TLS version of the agent API (lookup may raise it).' },
  { key: 'tls_cert_file', cmdline: 'bootc-agent-tls-cert-file', kind: 'string', help: 'Serve this PEM certificate instead of a generated one (needs tls_key_file).' },
  { key: 'tls_key_file', cmdline: 'bootc-agent-tls-key-file', kind: 'string', help: 'PEM private key for tls_cert_file.' },
  { key: 'hardware_initialization_delay', cmdline: 'ipa-hardware-initialization-delay', kind: 'number', default: 0, min: 0, help: 'Seconds to wait before collecting hardware information.' },
  { key: 'disk_wait_attempts', cmdline: 'ipa-disk-wait-attempts', kind: 'int', default: 10, min: 1, help: 'Attempts to find a disk before a step fails.' },
  { key: 'disk_wait_delay', cmdline: 'ipa-disk-wait-delay', kind: 'number', default: 3, min: 0, help: 'Seconds between those attempts.' },
  { key: 'include_loop_devices', cmdline: 'bootc-agent-include-loop-devices', kind: 'bool', default: false, help: 'Also list loop devices as disks (tests and demos on loop devices; never on real hardware).' },
  { key: 'container_storage', cmdline: 'bootc-agent-container-storage', kind: 'enum', choices: ['auto', 'memory', 'disk'], default: 'auto', help: 'Where execute_bootc_install keeps podman\'s storage and temporary files, and write_image a qcow2 image\'s temporary copy: memory (the ramdisk\'s /var/lib/containers and /var/tmp), disk (a scratch area in the target disk\'s tail, erased and given to root after the install), or auto (disk only when the image does not fit in memory with headroom). instance_info bootc_container_storage overrides it per node.' },
  { key: 'registry_mirrors', cmdline: 'bootc-agent-registry-mirrors', kind: 'string', help: 'Registry mirrors set at boot, for the OCI client and podman alike: comma-separated REGISTRY=MIRROR[;FLAG…] entries, in order (several for one registry are tried in that order, then the registry itself). REGISTRY may be a namespace prefix (quay.io/org); flags: digest-only, tag-only, insecure, ca=PATH (a PEM file, copied into registry_certs_dir/<mirror host>/). Written at each start as a drop-in into registries_conf_dir. instance_info bootc_registry_mirrors / image_registry_mirrors add mirrors per node.' },
  { key: 'registries_conf_dir', cmdline: 'bootc-agent-registries-conf-dir', kind: 'string', default: '/etc/containers/registries.conf.d', help: 'The registries.conf.d directory the agent writes its registry_mirrors drop-in into (removed at each start when the option is empty) and the OCI client reads; podman is pointed at it when it is not the default.' },
  { key: 'registry_certs_dir', cmdline: 'bootc-agent-registry-certs-dir', kind: 'string', default: '/etc/containers/certs.d', help: 'The certs.d directory a registry_mirrors ca=PATH file is copied into (<dir>/<mirror host[:port]>/), read by the OCI client and, at its default, by podman.' },
  { key: 'debug', cmdline: 'ipa-debug', kind: 'bool', default: false, help: 'Debug logging.' },
  { key: 'bootif', cmdline: 'BOOTIF', kind: 'string', help: 'PXE boot MAC (01-aa-bb-…), reported as inventory.boot.pxe_interface.' },
  { key: 'state_dir', cmdline: 'bootc-agent-state-dir', kind: 'string', default: '/run/bootc-agent', help: 'Where the token, certificate, callback URL and agent log are kept for the ramdisk lifetime.' },
  { key: 'log_file', cmdline: 'bootc-agent-log-file', kind: 'string', help: 'Agent log file (JSON lines); default <state_dir>/agent.log.' },
  { key: 'max_request_body_bytes', cmdline: 'bootc-agent-max-request-body', kind: 'int', default: 104857600, min: 1024, help: 'Largest accepted API request body (a 64 MiB config drive, gzipped and base64-encoded, fits).' },
  { key: 'api_max_connections', cmdline: 'bootc-agent-api-max-connections', kind: 'int', default: 64, min: 2, help: 'Most connections the agent API keeps open (TLS handshakes included); at the cap a new connection closes an idle one of the address holding the most (least recently used first), or is refused when none is idle.' },
  { key: 'api_max_connections_per_address', cmdline: 'bootc-agent-api-max-connections-per-address', kind: 'int', default: 16, min: 1, help: 'Most connections the agent API keeps open from one client address; beyond it a new connection from that address replaces one of its connections idle for a second or more, or is refused.' },
  { key: 'api_max_requests', cmdline: 'bootc-agent-api-max-requests', kind: 'int', default: 32, min: 1, help: 'Most requests the agent API answers at once (waiting ones included); beyond it a request answers 503 with Retry-After: 1.' },
  { key: 'api_header_timeout', cmdline: 'bootc-agent-api-header-timeout', kind: 'number', default: 10, min: 0.05, help: 'Seconds a client has for its TLS handshake, and for each request line and headers; then 408 and the connection is closed.' },
  { key: 'api_body_timeout', cmdline: 'bootc-agent-api-body-timeout', kind: 'number', default: 120, min: 0.05, help: 'Seconds a client has to send a whole request, body included (at least api_header_timeout); then 408 and the connection is closed.' },
  { key: 'api_max_json_entries', cmdline: 'bootc-agent-api-max-json-entries', kind: 'int', default: 10000, min: 16, help: 'Most object members and array items in a JSON request body; more answers 413 before the body is parsed.' },
  { key: 'disable_bootc_deploy', cmdline: 'bootc-agent-disable-bootc-deploy', kind: 'bool', default: false, help: 'Operator switch: refuse bootc deploys (like IPA\'s disable_bootc_deploy).' },
  { key: 'shutdown_timeout', cmdline: 'bootc-agent-shutdown-timeout', kind: 'number', default: 30, min: 1, help: 'Seconds SIGTERM/SIGINT may take: the running command is cancelled (its containers removed, a written disk wiped), heartbeats stop, the API closes; past this the agent exits 1 at once.' },
] as const satisfies readonly OptionDef[];

export type OptionKey = (typeof OPTIONS)[number]['key'];

// Strict boolean words: anything else is an error naming the key, never a guess.
const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off']);

export function parseBool(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number' && (value === 0 || value === 1)) return value === 1;
  if (typeof value !== 'string') return undefined;
  const word = value.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return undefined;
}

// One zod schema per option kind; values from the command line and environment arrive as
// strings, values from the JSON file may already be typed.
function schemaFor(def: OptionDef): z.ZodType {
  switch (def.kind) {
    case 'bool':
      return z.unknown().transform((v, ctx) => {
        const b = parseBool(v);
        if (b === undefined) {
          ctx.addIssue({ code: 'custom', message: `expected a boolean (true/false, 1/0, yes/no, on/off), got ${JSON.stringify(v)}` });
          return z.NEVER;
        }
        return b;
      });
    case 'int':
    case 'number': {
      let n = z.number({ error: (issue) => (issue.code === 'invalid_type' ? `expected a number, got ${JSON.stringify(issue.input)}` : undefined) });
      if (def.kind === 'int') n = n.int({ error: 'expected an integer' });
      if (def.min !== undefined) n = n.min(def.min);
      if (def.max !== undefined) n = n.max(def.max);
      // Numeric strings from the command line and environment become numbers; anything else
      // reaches z.number() unchanged and fails there with a message naming the value.
      return z.preprocess((v) => (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), n);
    }
    case 'enum':
      return z.enum(def.choices as [string, ...string[]]);
    case 'list':
      return z.union([z.array(z.string()), z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))]);
    case 'url-list':
      return z
        .union([z.array(z.string()), z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))])
        .pipe(
          z.array(
            z.string().refine((u) => u !== 'mdns', 'mDNS discovery is not supported; give the Ironic API URL')
              .refine((u) => /^https?:\/\/[^/]+/.test(u), 'expected http(s)://host[:port][/path]'),
          ).min(1, 'expected at least one URL'),
        );
    case 'string':
      return z.string().min(1, 'expected a non-empty string');
  }
}

export function buildConfigSchema() {
  const shape: Record<string, z.ZodType> = {};
  for (const def of OPTIONS as readonly OptionDef[]) {
    const s = schemaFor(def);
    shape[def.key] = def.default === undefined ? s.optional() : s.default(def.default as never);
  }
  return z.object(shape).strict();
}

export interface Config {
  api_url?: string[];
  insecure: boolean;
  ca_file?: string;
  agent_token?: string;
  global_request_id?: string;
  listen_host: string;
  listen_port: number;
  advertise_host?: string;
  advertise_port?: number;
  advertise_protocol: 'https' | 'http';
  network_interface?: string;
  ip_lookup_attempts: number;
  ip_lookup_sleep: number;
  lookup_timeout: number;
  lookup_interval: number;
  ironic_api_version?: string;
  http_request_timeout: number;
  tls_min_version: '1.2' | '1.3';
  tls_cert_file?: string;
  tls_key_file?: string;
  hardware_initialization_delay: number;
  disk_wait_attempts: number;
  disk_wait_delay: number;
  include_loop_devices: boolean;
  container_storage: 'auto' | 'memory' | 'disk';
  registry_mirrors?: string;
  registries_conf_dir: string;
  registry_certs_dir: string;
  debug: boolean;
  bootif?: string;
  state_dir: string;
  log_file?: string;
  max_request_body_bytes: number;
  api_max_connections: number;
  api_max_connections_per_address: number;
  api_max_requests: number;
  api_header_timeout: number;
  api_body_timeout: number;
  api_max_json_entries: number;
  disable_bootc_deploy: boolean;
  shutdown_timeout: number;
}
