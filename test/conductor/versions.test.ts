import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compareMicroversions, errorMessageOf, lookupDelayMs, MASKED_TOKEN, negotiateVersions, parseMicroversion, resolveAgentToken,
} from '../../src/conductor/index.ts';

describe('microversions', () => {
  it('parse and compare numerically, not as strings', () => {
    assert.deepEqual(parseMicroversion('1.62'), [1, 62]);
    assert.equal(parseMicroversion('1.x'), undefined);
    assert.equal(parseMicroversion('latest'), undefined);
    assert.ok(compareMicroversions([1, 9], [1, 62]) < 0);
    assert.ok(compareMicroversions([1, 100], [1, 99]) > 0);
    assert.ok(compareMicroversions([2, 0], [1, 99]) > 0);
    assert.equal(compareMicroversions([1, 68], [1, 68]), 0);
  });

  const cases: [string, { lookup: string; heartbeat: string; withStatus: string | undefined; verifyCa: boolean; token: boolean }][] = [
    ['1.96', { lookup: '1.62', heartbeat: '1.68', withStatus: '1.72', verifyCa: true, token: true }],
    ['1.72', { lookup: '1.62', heartbeat: '1.68', withStatus: '1.72', verifyCa: true, token: true }],
    ['1.68', { lookup: '1.62', heartbeat: '1.68', withStatus: undefined, verifyCa: true, token: true }],
    ['1.65', { lookup: '1.62', heartbeat: '1.65', withStatus: undefined, verifyCa: false, token: true }],
    ['1.50', { lookup: '1.50', heartbeat: '1.50', withStatus: undefined, verifyCa: false, token: false }],
    ['1.9', { lookup: '1.9', heartbeat: '1.9', withStatus: undefined, verifyCa: false, token: false }],
  ];
  for (const [server, expected] of cases) {
    it(`server ${server}: lookup ${expected.lookup}, heartbeat ${expected.heartbeat}`, () => {
      const v = negotiateVersions(parseMicroversion(server)!);
      assert.equal(v.lookup, expected.lookup);
      assert.equal(v.heartbeat, expected.heartbeat);
      assert.equal(v.heartbeatWithStatus, expected.withStatus);
      assert.equal(v.supportsVerifyCa, expected.verifyCa);
      assert.equal(v.supportsToken, expected.token);
    });
  }
});

describe('lookup back-off', () => {
  it('is uniform between the interval and min(60 s, interval × 2^(n−1))', () => {
    assert.equal(lookupDelayMs(1, 1000, () => 0.999), 1000);
    assert.equal(lookupDelayMs(3, 1000, () => 0), 1000);
    assert.equal(lookupDelayMs(3, 1000, () => 1), 4000);
    assert.equal(lookupDelayMs(3, 1000, () => 0.5), 2500);
    assert.equal(lookupDelayMs(20, 1000, () => 1), 60_000);
    assert.equal(lookupDelayMs(2, 90_000, () => 0.5), 60_000);
  });
});

describe('agent token rules', () => {
  const fresh = 't'.repeat(43);
  const known = 'k'.repeat(43);
  it('takes a fresh token of at least 32 characters, even over a known one', () => {
    assert.deepEqual(resolveAgentToken({ received: fresh, required: true, known }), { token: fresh, source: 'lookup' });
    assert.equal(resolveAgentToken({ received: 'x'.repeat(32), required: true, known: undefined }).token, 'x'.repeat(32));
  });
  it('keeps a known token when the conductor masks it', () => {
    const r = resolveAgentToken({ received: MASKED_TOKEN, required: true, known });
    assert.equal(r.token, known);
    assert.equal(r.source, 'known');
    assert.match(r.warning ?? '', /masked/);
  });
  it('fails with LOOKUP_TOKEN_MISSING on a masked token and none on file', () => {
    assert.throws(() => resolveAgentToken({ received: MASKED_TOKEN, required: true, known: undefined }), { code: 'LOOKUP_TOKEN_MISSING', message: /masked/ });
  });
  it('refuses a short token, falling back to a known one', () => {
    assert.throws(() => resolveAgentToken({ received: 'short-token', required: true, known: undefined }), { code: 'LOOKUP_TOKEN_MISSING', message: /11 characters/ });
    assert.equal(resolveAgentToken({ received: 'short-token', required: true, known }).token, known);
    assert.throws(() => resolveAgentToken({ received: MASKED_TOKEN, required: true, known: 'too-short-known' }), { code: 'LOOKUP_TOKEN_MISSING' });
  });
  it('continues without a token only when the conductor does not require one', () => {
    assert.deepEqual(resolveAgentToken({ received: null, required: false, known: undefined }).token, undefined);
    assert.equal(resolveAgentToken({ received: MASKED_TOKEN, required: false, known: undefined }).source, 'none');
    assert.throws(() => resolveAgentToken({ received: undefined, required: true, known: undefined }), { code: 'LOOKUP_TOKEN_MISSING' });
  });
});

describe('Ironic error bodies', () => {
  it('unwraps error_message JSON strings, objects, titles and plain text', () => {
    assert.equal(errorMessageOf('{"error_message": "{\\"faultcode\\": \\"Client\\", \\"faultstring\\": \\"Node is locked\\", \\"debuginfo\\": null}"}'), 'Node is locked');
    assert.equal(errorMessageOf('{"error_message": {"faultstring": "object form"}}'), 'object form');
    assert.equal(errorMessageOf('{"error_message": "plain string"}'), 'plain string');
    assert.equal(errorMessageOf('{"faultstring": "top level"}'), 'top level');
    assert.equal(errorMessageOf('{"title": "Not Acceptable"}'), 'Not Acceptable');
    assert.equal(errorMessageOf('<html>Bad Gateway</html>'), '<html>Bad Gateway</html>');
    assert.equal(errorMessageOf(''), undefined);
  });
});
