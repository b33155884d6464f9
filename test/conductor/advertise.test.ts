import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, it } from 'node:test';
import {
  buildCallbackUrl, findAdvertiseAddress, isLinkLocal, parseRouteSource, type AdvertiseConfig,
} from '../../src/conductor/index.ts';
import { CommandFailedError } from '../../src/errors.ts';
import type { CommandRunner, RunResult } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';

// Answers `ip route get <ip>` from a script of outputs (an Error = the command failed);
// anything else is a test bug.
function scriptedRunner(outputs: (string | Error)[]) {
  const calls: string[][] = [];
  const runner: CommandRunner = {
    async run(file, args) {
      calls.push([file, ...args]);
      assert.equal(file, 'ip');
      assert.deepEqual(args.slice(0, 2), ['route', 'get']);
      const next = outputs.shift();
      if (next === undefined) throw new Error(`unexpected call: ${file} ${args.join(' ')}`);
      if (next instanceof Error) throw next;
      return { argv: [file, ...args], exitCode: 0, stdout: next, stderr: '', durationMs: 1 } satisfies RunResult;
    },
  };
  return { runner, calls };
}

const config = (over: Partial<AdvertiseConfig> = {}): AdvertiseConfig => ({
  api_url: ['https://192.0.2.1:6385'], ip_lookup_attempts: 3, ip_lookup_sleep: 10, ...over,
});
const iface = (address: string): NetworkInterfaceInfo => ({
  address, netmask: '255.255.255.0', family: address.includes(':') ? 'IPv6' : 'IPv4', mac: '52:54:00:12:34:56', internal: false, cidr: null,
  ...(address.includes(':') ? { scopeid: 0 } : {}),
} as NetworkInterfaceInfo);

describe('advertise address', () => {
  it('uses advertise_host as given', async () => {
    const { runner, calls } = scriptedRunner([]);
    assert.equal(await findAdvertiseAddress({ config: config({ advertise_host: '[2001:db8::5]' }), runner, log: createSilentLogger() }), '2001:db8::5');
    assert.deepEqual(calls, []);
  });

  it('takes the first non-link-local IPv4 of network_interface, waiting for it to appear', async () => {
    const { runner } = scriptedRunner([]);
    const tables = [{}, { eth0: [iface('fe80::1'), iface('169.254.3.4')] }, { eth0: [iface('fe80::1'), iface('169.254.3.4'), iface('192.0.2.50')] }];
    const sleeps: number[] = [];
    const found = await findAdvertiseAddress({
      config: config({ network_interface: 'eth0' }), runner, log: createSilentLogger(),
      networkInterfaces: () => tables.shift() ?? {}, sleep: async (ms) => { sleeps.push(ms); },
    });
    assert.equal(found, '192.0.2.50');
    assert.deepEqual(sleeps, [10_000, 10_000]);
  });

  it('uses the source address of the route to the Ironic API, skipping link-local ones', async () => {
    const { runner, calls } = scriptedRunner([
      new CommandFailedError('COMMAND_FAILED', ['ip', 'route', 'get', '192.0.2.1'], 2, 'RTNETLINK answers: Network is unreachable'),
      '192.0.2.1 dev eth0 src 169.254.10.10 uid 0 \n    cache \n',
      '192.0.2.1 via 198.51.100.1 dev eth0 src 198.51.100.20 uid 0 \n    cache \n',
    ]);
    const sleeps: number[] = [];
    const found = await findAdvertiseAddress({ config: config(), runner, log: createSilentLogger(), sleep: async (ms) => { sleeps.push(ms); } });
    assert.equal(found, '198.51.100.20');
    assert.deepEqual(calls[0], ['ip', 'route', 'get', '192.0.2.1']);
    assert.deepEqual(sleeps, [10_000, 10_000]);
  });

  it('resolves API host names first and tries every API URL', async () => {
    const { runner, calls } = scriptedRunner(['no src here\n', '2001:db8::1 from :: via fe80::1 dev eth0 proto ra src 2001:db8::10 metric 100 pref medium\n']);
    const found = await findAdvertiseAddress({
      config: config({ api_url: ['https://ironic.example:6385', 'https://[2001:db8::1]:6385/baremetal'] }), runner, log: createSilentLogger(),
      resolveHost: async (host) => { assert.equal(host, 'ironic.example'); return '192.0.2.7'; },
    });
    assert.equal(found, '2001:db8::10');
    assert.deepEqual(calls.map((c) => c[3]), ['192.0.2.7', '2001:db8::1']);
  });

  it('fails with ADVERTISE_ADDRESS_NOT_FOUND after ip_lookup_attempts', async () => {
    const { runner, calls } = scriptedRunner(['x src fe80::2\n', 'x src fe80::2\n']);
    await assert.rejects(
      findAdvertiseAddress({ config: config({ ip_lookup_attempts: 2 }), runner, log: createSilentLogger(), sleep: async () => undefined }),
      { code: 'ADVERTISE_ADDRESS_NOT_FOUND', message: /after 2 attempts/ },
    );
    assert.equal(calls.length, 2);
    await assert.rejects(
      findAdvertiseAddress({ config: config({ ip_lookup_attempts: 1, api_url: ['https://nowhere.invalid'] }), runner, log: createSilentLogger(), resolveHost: async () => { throw new Error('ENOTFOUND'); } }),
      { code: 'ADVERTISE_ADDRESS_NOT_FOUND', message: /no resolvable host/ },
    );
  });

  it('parses route output and recognises link-local addresses', () => {
    assert.equal(parseRouteSource('10.0.0.1 via 192.168.1.1 dev wlan0 src 192.168.1.23 uid 1000\n    cache\n'), '192.168.1.23');
    assert.equal(parseRouteSource('local 127.0.0.1 dev lo src 127.0.0.1 uid 0\n'), '127.0.0.1');
    assert.equal(parseRouteSource('unreachable'), undefined);
    assert.equal(parseRouteSource('x src notanip'), undefined);
    assert.ok(isLinkLocal('169.254.0.1'));
    assert.ok(isLinkLocal('fe80::1'));
    assert.ok(isLinkLocal('febf::1'));
    assert.ok(!isLinkLocal('fec0::1'));
    assert.ok(!isLinkLocal('192.0.2.1'));
  });

  it('builds callback URLs, bracketing IPv6', () => {
    assert.equal(buildCallbackUrl('https', '192.0.2.10', 9999), 'https://192.0.2.10:9999');
    assert.equal(buildCallbackUrl('https', '2001:db8::10', 9999), 'https://[2001:db8::10]:9999');
    assert.equal(buildCallbackUrl('https', '[2001:db8::10]', 9999), 'https://[2001:db8::10]:9999');
    assert.equal(buildCallbackUrl('http', 'agent.example', 8080), 'http://agent.example:8080');
  });
});
