/**
 * The address the conductor calls back on (IPA `agent.py` `set_agent_advertise_addr`):
 * `advertise_host` when set; else the first IPv4 of `network_interface`; else the source
 * address the kernel would use to reach the Ironic API (`ip route get <api IP>`), ignoring
 * link-local addresses. Retried `ip_lookup_attempts` times, `ip_lookup_sleep` s apart, since
 * DHCP may still be running when the agent starts.
 * @module
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, isIPv4 } from 'node:net';
import { networkInterfaces as osNetworkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { Config } from '../config/index.ts';
import { AgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { ipAddressBytes } from '../tls/index.ts';
import { systemSleep, throwIfAborted, type Sleep } from './clock.ts';

export type AdvertiseConfig = Pick<Config, 'advertise_host' | 'network_interface' | 'api_url' | 'ip_lookup_attempts' | 'ip_lookup_sleep'>;

export interface AdvertiseOptions {
  config: AdvertiseConfig;
  runner: CommandRunner;
  log: Logger;
  networkInterfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  /** Host name → IP address (default: dns.lookup). */
  resolveHost?: (host: string) => Promise<string>;
  sleep?: Sleep;
  signal?: AbortSignal;
}

/** 169.254.0.0/16 and fe80::/10. */
export function isLinkLocal(ip: string): boolean {
  const bytes = ipAddressBytes(ip);
  if (!bytes) return false;
  if (bytes.length === 4) return bytes[0] === 169 && bytes[1] === 254;
  return bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;
}

/** The `src` address of the first line of `ip route get` output. */
export function parseRouteSource(stdout: string): string | undefined {
  const first = stdout.trim().split('\n')[0] ?? '';
  const m = /\bsrc\s+(\S+)/.exec(first);
  return m && isIP(m[1]!) ? m[1] : undefined;
}

/** `https://192.0.2.10:9999`, `https://[2001:db8::10]:9999`. */
export function buildCallbackUrl(protocol: 'http' | 'https', host: string, port: number): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return `${protocol}://${bare.includes(':') ? `[${bare}]` : bare}:${port}`;
}

function interfaceAddress(list: NetworkInterfaceInfo[] | undefined): string | undefined {
  return list?.find((a) => isIPv4(a.address) && !isLinkLocal(a.address))?.address;
}

export async function findAdvertiseAddress(options: AdvertiseOptions): Promise<string> {
  const { config, signal } = options;
  const log = options.log.child({ component: 'advertise' });
  if (config.advertise_host) return config.advertise_host.replace(/^\[(.*)\]$/, '$1');
  const sleep = options.sleep ?? systemSleep;
  const listInterfaces = options.networkInterfaces ?? osNetworkInterfaces;
  const resolveHost = options.resolveHost ?? (async (host: string) => (await dnsLookup(host)).address);

  // The API hosts, resolved once: `ip route get` needs an address.
  const targets: string[] = [];
  if (!config.network_interface) {
    for (const url of config.api_url ?? []) {
      const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
      try {
        targets.push(isIP(host) ? host : await resolveHost(host));
      } catch (err) {
        log.warn({ err, host }, 'cannot resolve the Ironic API host name');
      }
    }
  }
  const attempts = Math.max(1, config.ip_lookup_attempts);
  for (let attempt = 1; attempt <= attempts; attempt++) {
    throwIfAborted(signal);
    if (config.network_interface) {
      const found = interfaceAddress(listInterfaces()[config.network_interface]);
      if (found) return found;
      log.info({ interface: config.network_interface, attempt }, 'interface has no usable IPv4 address yet');
    }
    for (const target of targets) {
      try {
        const { stdout } = await options.runner.run('ip', ['route', 'get', target], signal ? { signal } : {});
        const source = parseRouteSource(stdout);
        if (source && !isLinkLocal(source)) return source;
        log.info({ target, source: source ?? null, attempt }, source ? 'ignoring a link-local route source' : 'no source address in the route');
      } catch (err) {
        throwIfAborted(signal);
        log.warn({ err, target, attempt }, 'cannot get the route to the Ironic API');
      }
    }
    if (attempt < attempts) await sleep(config.ip_lookup_sleep * 1000, signal);
  }
  throw new AgentError('ADVERTISE_ADDRESS_NOT_FOUND', config.network_interface
    ? `Interface ${config.network_interface} has no usable IPv4 address after ${attempts} attempts`
    : `No route source address towards the Ironic API (${targets.join(', ') || 'no resolvable host'}) after ${attempts} attempts; set ipa-advertise-host`, {
    details: { attempts, interface: config.network_interface ?? null, targets },
  });
}
