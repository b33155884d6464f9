// The pure pieces behind the API's limits: request targets, the JSON shape check, and the
// defaults (which must be the configuration options' defaults).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiLimits, createRouter, DEFAULT_API_LIMITS, type ApiLimits } from '../../src/api/index.ts';
import { checkJsonShape } from '../../src/api/json-shape.ts';
import { loggablePath, parseTarget } from '../../src/api/target.ts';
import { CommandExecutor } from '../../src/commands/index.ts';
import { OPTIONS } from '../../src/config/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createSilentLogger } from '../../src/log/index.ts';

const TOKEN = 'z'.repeat(40);

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(isAgentError(err), String(err));
    return err.code;
  }
}

describe('request targets', () => {
  const good: Array<[string, string, Record<string, string>]> = [
    ['/v1/commands/?wait=true&agent_token=T', '/v1/commands/', { wait: 'true', agent_token: 'T' }],
    ['/v1/status', '/v1/status', {}],
    ['/', '/', {}],
    ['/v1/./commands/../status', '/v1/status', {}],
    ['/v1/commands/%7Bid%7D?a=%5B1%5D&b=[2]', '/v1/commands/%7Bid%7D', { a: '[1]', b: '[2]' }],
    ['http://agent:9999/v1/status?agent_token=T', '/v1/status', { agent_token: 'T' }],
    ['/v1/status?x=1#fragment', '/v1/status', { x: '1' }],
  ];
  for (const [target, path, query] of good) {
    it(`reads ${target}`, () => {
      const parsed = parseTarget(target);
      assert.equal(parsed.path, path);
      assert.deepEqual(Object.fromEntries(parsed.query), query);
      assert.equal(loggablePath(target), path);
    });
  }

  const bad = ['//[?agent_token=T', '//[::1', '//a:b@', 'http://[', 'http://a:b@agent/', '*', 'v1/status', '/v1/{x}', '/v1/%zz', '/v1 /status', '//v1/status', 'ftp://agent/v1'];
  for (const target of bad) {
    it(`refuses ${target} without quoting it`, () => {
      try {
        parseTarget(target);
        assert.fail('accepted');
      } catch (err) {
        assert.ok(isAgentError(err));
        assert.equal(err.code, 'MALFORMED_HTTP_REQUEST');
        assert.equal(err.status, 400);
        assert.ok(!err.message.includes(target));
      }
      assert.equal(loggablePath(target), '[malformed target]');
    });
  }

  it('logs at most 256 characters of a path', () => {
    assert.equal(loggablePath(`/${'a'.repeat(1000)}`).length, 257);
  });
});

describe('JSON shape check', () => {
  const check = (text: string, entries = 10, depth = 4) => code(() => checkJsonShape(Buffer.from(text), entries, depth));

  it('counts object members and array items (an empty object or array one), nothing inside strings', () => {
    assert.equal(check('{"a":1,"b":[1,2,3,4,5,6,7,8]}'), undefined); // 2 members + 8 items
    assert.equal(check('{"a":1,"b":[1,2,3,4,5,6,7,8,9]}'), 'REQUEST_JSON_TOO_COMPLEX');
    assert.equal(check('[1,2,3,4,5,6,7,8,9,10]', 10), undefined);
    assert.equal(check('[1,2,3,4,5,6,7,8,9,10,11]', 10), 'REQUEST_JSON_TOO_COMPLEX');
    assert.equal(check('[[],[],[],[],[]]', 5), 'REQUEST_JSON_TOO_COMPLEX', 'an empty container counts one');
    assert.equal(check(`{"s":"${',{['.repeat(1000)}"}`), undefined);
    assert.equal(check(`{"s":"a\\\\","t":"\\",[,[,[,[,[,[,[,[,[,[,["}`), undefined, 'escaped quotes stay inside the string');
    assert.equal(check('{"s":"a\\\\",'.concat('"x":1,'.repeat(20), '"y":2}')), 'REQUEST_JSON_TOO_COMPLEX', 'an escaped backslash ends the string');
  });

  it('limits nesting', () => {
    assert.equal(check('[[[[1]]]]'), undefined);
    assert.equal(check('[[[[[1]]]]]'), 'REQUEST_JSON_TOO_COMPLEX');
    assert.equal(check('{"a":{"b":{"c":{"d":{}}}}}'), 'REQUEST_JSON_TOO_COMPLEX');
  });

  it('leaves malformed JSON to JSON.parse', () => {
    assert.equal(check('{"unterminated'), undefined);
    assert.equal(check(']]]],,'), undefined);
  });

  it('skips a large string at memchr speed: 64 MiB of base64 in one value', () => {
    const big = Buffer.alloc(64 * 2 ** 20 + 32, 0x41);
    big.write('{"configdrive":"', 0);
    big.write('"}', big.length - 2);
    assert.equal(code(() => checkJsonShape(big, 16, 4)), undefined);
  });
});

describe('API limits', () => {
  it('defaults to the configuration options\' defaults, every one of them a positive number', () => {
    assert.deepEqual(Object.keys(DEFAULT_API_LIMITS).sort(), OPTIONS.map((o) => o.key).filter((k) => k.startsWith('api_') && k !== 'api_url').sort());
    for (const [key, value] of Object.entries(DEFAULT_API_LIMITS)) assert.ok(typeof value === 'number' && value > 0, `${key}: ${String(value)}`);
    assert.equal(DEFAULT_API_LIMITS.api_max_json_entries, 10_000);
  });

  it('takes its keys from any object holding them (the agent\'s Config), defaults for the rest', () => {
    const config = { listen_port: 9999, api_max_connections: 5, api_header_timeout: 2, api_body_timeout: 1 };
    const limits: ApiLimits = apiLimits(config);
    assert.deepEqual(limits, { ...DEFAULT_API_LIMITS, api_max_connections: 5, api_header_timeout: 2, api_body_timeout: 2 });
  });

  it('the router refuses a body over api_max_json_entries with 413 and starts nothing', async () => {
    const log = createSilentLogger();
    const executor = new CommandExecutor({ log });
    const router = createRouter({ executor, log, agentVersion: 't', startedAt: 0, getToken: () => TOKEN, getInventory: async () => ({}), limits: { api_max_json_entries: 16 } });
    const params = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]));
    const res = await router({ method: 'POST', url: `/v1/commands/?agent_token=${TOKEN}`, headers: {}, body: Buffer.from(JSON.stringify({ name: 'standby.sync', params })) });
    assert.equal(res.status, 413);
    assert.equal((res.body as { error_code: string }).error_code, 'REQUEST_JSON_TOO_COMPLEX');
    assert.deepEqual(executor.list(), []);
  });

  it('the router reads the body only after the token was checked', async () => {
    const log = createSilentLogger();
    const router = createRouter({ executor: new CommandExecutor({ log }), log, agentVersion: 't', startedAt: 0, getToken: () => TOKEN, getInventory: async () => ({}) });
    let reads = 0;
    const readBody = async () => { reads++; return Buffer.from('{}'); };
    assert.equal((await router({ method: 'POST', url: '/v1/commands/?agent_token=wrong', headers: {}, readBody })).status, 401);
    assert.equal((await router({ method: 'POST', url: '/v1/commands/', headers: {}, readBody })).status, 401);
    assert.equal(reads, 0);
    assert.equal((await router({ method: 'POST', url: `/v1/commands/?agent_token=${TOKEN}`, headers: {}, readBody })).status, 400);
    assert.equal(reads, 1);
  });
});
