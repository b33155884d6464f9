/**
 * The BMC's addresses from `ipmitool` (IPA `get_bmc_address`/`get_bmc_v6address`). A machine
 * without ipmitool, or without a BMC, simply has none: that is never an error.
 * @module
 */
import { isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';

export interface BmcAddresses {
  v4: string | null;
  v6: string | null;
}

/** The `IP Address : …` line of `ipmitool lan print`; `0.0.0.0` (unconfigured) is no address. */
export function parseIpmiLanPrint(stdout: string): string | null {
  const m = /^IP Address\s*:\s*(\S+)\s*$/m.exec(stdout);
  const address = m?.[1] ?? null;
  return address && address !== '0.0.0.0' ? address : null;
}

/**
 * The first active address of `ipmitool lan6 print`, whose static and dynamic address blocks
 * each carry `Address: <ip>/<len>` followed by `Status: active|disabled|…`.
 */
export function parseIpmiLan6Print(stdout: string): string | null {
  let pending: string | null = null;
  for (const line of stdout.split('\n')) {
    const address = /^\s*Address:\s*([0-9a-fA-F:.]+)(\/\d+)?\s*$/.exec(line);
    if (address) {
      pending = address[1] ?? null;
      continue;
    }
    const status = /^\s*Status:\s*(\S+)/.exec(line);
    if (status && pending) {
      if (status[1]?.toLowerCase() === 'active' && pending !== '::') return pending;
      pending = null;
    }
  }
  return null;
}

export interface GetBmcAddressesOptions {
  runner: CommandRunner;
  signal?: AbortSignal;
  log?: Logger;
}

// Returns undefined when ipmitool itself is missing, so the caller stops asking.
async function ipmitool(options: GetBmcAddressesOptions, args: string[]): Promise<string | null | undefined> {
  try {
    const { stdout } = await options.runner.run('ipmitool', args, { signal: options.signal, timeoutMs: 30_000 });
    return stdout;
  } catch (err) {
    if (isAgentError(err) && err.code === 'CANCELLED') throw err;
    if (isAgentError(err) && err.code === 'COMMAND_NOT_FOUND') return undefined;
    options.log?.debug({ err, args }, 'ipmitool found no BMC');
    return null;
  }
}

/** The BMC's IPv4 and IPv6 addresses, or nulls when there is no ipmitool or no BMC. */
export async function getBmcAddresses(options: GetBmcAddressesOptions): Promise<BmcAddresses> {
  const lan = await ipmitool(options, ['lan', 'print']);
  if (lan === undefined) {
    options.log?.debug('ipmitool is not installed; no BMC address');
    return { v4: null, v6: null };
  }
  // No answer to `lan print` means no BMC device: `lan6 print` would fail the same way.
  const lan6 = lan === null ? null : await ipmitool(options, ['lan6', 'print']);
  return { v4: lan ? parseIpmiLanPrint(lan) : null, v6: lan6 ? parseIpmiLan6Print(lan6) : null };
}
