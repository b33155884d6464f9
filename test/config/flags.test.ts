import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig, OPTIONS, parseFlags, withBareBooleans } from '../../src/config/index.ts';

const configFrom = (argv: string[]) => loadConfig({ overrides: parseFlags(argv).overrides });

describe('parseFlags', () => {
  it('takes a bare bool flag as true, wherever it stands', () => {
    assert.equal(configFrom(['--include-loop-devices']).include_loop_devices, true);
    const c = configFrom(['--debug', '--listen-port', '1234', '--include-loop-devices', '--insecure']);
    assert.equal(c.debug, true);
    assert.equal(c.include_loop_devices, true);
    assert.equal(c.insecure, true);
    assert.equal(c.listen_port, 1234);
  });

  it('reads every bool option as a bare flag', () => {
    const bools = OPTIONS.filter((def) => def.kind === 'bool');
    assert.ok(bools.length >= 4);
    for (const def of bools) {
      const c = configFrom([`--${def.key.replaceAll('_', '-')}`]) as unknown as Record<string, unknown>;
      assert.equal(c[def.key], true, def.key);
    }
  });

  it('still takes an explicit value, after = or as the next word', () => {
    assert.equal(configFrom(['--debug=false']).debug, false);
    assert.equal(configFrom(['--debug=0']).debug, false);
    assert.equal(configFrom(['--debug', 'false']).debug, false);
    assert.equal(configFrom(['--debug', 'yes']).debug, true);
    assert.equal(configFrom(['--debug=true', '--insecure', 'off']).insecure, false);
  });

  it('leaves a wrong value to the config check, which names the flag', () => {
    assert.throws(() => configFrom(['--debug', 'maybe']), (e: { code?: string; message: string }) =>
      e.code === 'CONFIG_INVALID' && /debug .*command-line flag.*boolean/.test(e.message));
  });

  it('does not make other options bare', () => {
    assert.throws(() => parseFlags(['--listen-port']), /argument missing/);
    assert.throws(() => parseFlags(['--state-dir', '--debug']), /ambiguous/);
  });

  it('keeps the agent flags and refuses unknown ones and positionals', () => {
    const { values, overrides } = parseFlags(['--config', '/c.json', '--cmdline-file=/dev/null', '--help', '--version']);
    assert.equal(values['config'], '/c.json');
    assert.equal(values['cmdline-file'], '/dev/null');
    assert.equal(values['help'], true);
    assert.equal(values['version'], true);
    assert.deepEqual(overrides, {});
    assert.throws(() => parseFlags(['--no-such-flag']), /Unknown option/);
    assert.throws(() => parseFlags(['stray']), /Unexpected argument/);
  });
});

describe('withBareBooleans', () => {
  it('spells out =true only where a bool flag has no value', () => {
    assert.deepEqual(withBareBooleans(['--debug']), ['--debug=true']);
    assert.deepEqual(withBareBooleans(['--debug', '--insecure']), ['--debug=true', '--insecure=true']);
    assert.deepEqual(withBareBooleans(['--debug', 'false']), ['--debug', 'false']);
    assert.deepEqual(withBareBooleans(['--debug', '-']), ['--debug', '-']);
    assert.deepEqual(withBareBooleans(['--debug=0', '--listen-host', '::']), ['--debug=0', '--listen-host', '::']);
    assert.deepEqual(withBareBooleans(['--', '--debug']), ['--', '--debug']);
  });
});

describe('kernel command line', () => {
  // IPA reads only key=value words from /proc/cmdline: a bare word is never a true there.
  it('does not take a bare option word as true', () => {
    assert.throws(() => loadConfig({ cmdline: 'ipa-debug' }), (e: { code?: string; message: string }) =>
      e.code === 'CONFIG_INVALID' && /debug \/ ipa-debug .*kernel command line.*boolean/.test(e.message));
    assert.equal(loadConfig({ cmdline: 'bootc-agent-include-loop-devices=1' }).include_loop_devices, true);
  });
});
