import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatHelp, loadConfig, OPTIONS, parseKernelCmdline } from '../../src/config/index.ts';

describe('parseKernelCmdline', () => {
  const cases: Array<[string, Record<string, string>]> = [
    ['', {}],
    ['ipa-api-url=http://a:6385', { 'ipa-api-url': 'http://a:6385' }],
    ['  quiet   ipa-debug=1\n', { quiet: '', 'ipa-debug': '1' }],
    ['sshkey="ssh-ed25519 AAAA user@host" nofb', { sshkey: 'ssh-ed25519 AAAA user@host', nofb: '' }],
    ['a=1 a=2', { a: '2' }],
    ['root=UUID=abc', { root: 'UUID=abc' }],
    ['BOOTIF=01-52-54-00-12-34-56 vga=normal', { BOOTIF: '01-52-54-00-12-34-56', vga: 'normal' }],
  ];
  for (const [input, expected] of cases) {
    it(`parses ${JSON.stringify(input)}`, () => {
      assert.deepEqual(Object.fromEntries(parseKernelCmdline(input)), expected);
    });
  }
});

describe('loadConfig', () => {
  it('has IPA defaults', () => {
    const c = loadConfig({});
    assert.equal(c.listen_host, '::');
    assert.equal(c.listen_port, 9999);
    assert.equal(c.lookup_timeout, 600);
    assert.equal(c.lookup_interval, 1);
    assert.equal(c.http_request_timeout, 30);
    assert.equal(c.disk_wait_attempts, 10);
    assert.equal(c.disk_wait_delay, 3);
    assert.equal(c.advertise_protocol, 'https');
    assert.equal(c.insecure, false);
    assert.equal(c.api_url, undefined);
    assert.ok(Object.isFrozen(c));
  });

  it('reads IPA kernel parameters and ignores unknown words', () => {
    const c = loadConfig({
      cmdline: 'BOOT_IMAGE=/vmlinuz nofb nomodeset vga=normal sshkey="ssh-rsa AAA x" ipa-api-url=http://10.0.0.1:6385,https://ironic.example:6385 '
        + 'ipa-insecure=1 ipa-agent-token=abcdefghijklmnopqrstuvwxyz0123456789 ipa-global-request-id=req-0c7a ipa-listen-port=9998 '
        + 'ipa-advertise-host=192.0.2.5 ipa-advertise-port=443 ipa-advertise-protocol=http ipa-lookup-timeout=30 ipa-lookup-interval=2 '
        + 'ipa-http-request-timeout=5 ipa-debug=true BOOTIF=01-52-54-00-12-34-56 ipa-disk-wait-attempts=2 ipa-disk-wait-delay=0.5',
    });
    assert.deepEqual(c.api_url, ['http://10.0.0.1:6385', 'https://ironic.example:6385']);
    assert.equal(c.insecure, true);
    assert.equal(c.agent_token, 'abcdefghijklmnopqrstuvwxyz0123456789');
    assert.equal(c.global_request_id, 'req-0c7a');
    assert.equal(c.listen_port, 9998);
    assert.equal(c.advertise_host, '192.0.2.5');
    assert.equal(c.advertise_port, 443);
    assert.equal(c.advertise_protocol, 'http');
    assert.equal(c.lookup_timeout, 30);
    assert.equal(c.lookup_interval, 2);
    assert.equal(c.http_request_timeout, 5);
    assert.equal(c.debug, true);
    assert.equal(c.bootif, '01-52-54-00-12-34-56');
    assert.equal(c.disk_wait_attempts, 2);
    assert.equal(c.disk_wait_delay, 0.5);
  });

  it('applies precedence: cmdline < file < env < overrides', () => {
    const c = loadConfig({
      cmdline: 'ipa-listen-port=1 ipa-lookup-timeout=10 ipa-lookup-interval=3 ipa-debug=0',
      file: { listen_port: 2, lookup_timeout: 20 },
      env: { BOOTC_AGENT_LISTEN_PORT: '3' },
      overrides: { debug: true },
    });
    assert.equal(c.listen_port, 3);
    assert.equal(c.lookup_timeout, 20);
    assert.equal(c.lookup_interval, 3);
    assert.equal(c.debug, true);
  });

  const bad: Array<[string, Parameters<typeof loadConfig>[0], RegExp]> = [
    ['a non-boolean', { cmdline: 'ipa-insecure=maybe' }, /insecure \/ ipa-insecure .*kernel command line.*boolean/],
    ['mdns', { cmdline: 'ipa-api-url=mdns' }, /api_url.*mDNS/],
    ['a non-URL', { cmdline: 'ipa-api-url=ironic:6385' }, /api_url.*http/],
    ['a port out of range', { env: { BOOTC_AGENT_LISTEN_PORT: '99999' } }, /listen_port.*BOOTC_AGENT_LISTEN_PORT.*65535/],
    ['a non-integer port', { cmdline: 'ipa-listen-port=80.5' }, /listen_port.*integer/],
    ['a word for a number', { cmdline: 'ipa-lookup-timeout=soon' }, /lookup_timeout.*number/],
    ['an unknown protocol', { cmdline: 'ipa-advertise-protocol=ftp' }, /advertise_protocol/],
    ['an unknown file key', { file: { listen_prot: 1 }, filePath: '/etc/x.json' }, /Unknown key "listen_prot" in config file \/etc\/x.json/],
    ['a non-object file', { file: [1] }, /JSON object/],
    ['a certificate without key', { file: { tls_cert_file: '/c.pem' } }, /tls_cert_file and tls_key_file/],
  ];
  for (const [name, sources, pattern] of bad) {
    it(`rejects ${name} with a message naming the key`, () => {
      assert.throws(() => loadConfig(sources), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CONFIG_INVALID');
        assert.match(err.message, pattern);
        return true;
      });
    });
  }

  it('lists every option in --help', () => {
    const help = formatHelp();
    for (const def of OPTIONS) {
      assert.ok(help.includes(`--${def.key.replaceAll('_', '-')}`), def.key);
    }
  });
});
