import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkPolicy, parsePolicy, parseReference } from '../../src/oci/index.ts';
import { policyScopes } from '../../src/oci/policy.ts';

const policy = parsePolicy(JSON.stringify({
  default: [{ type: 'reject' }],
  transports: {
    docker: {
      'quay.io/signed': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/k' }],
      'quay.io/sigstore/img': [{ type: 'sigstoreSigned', keyPath: '/k' }],
      'quay.io': [{ type: 'insecureAcceptAnything' }],
      '*.corp.example': [{ type: 'insecureAcceptAnything' }],
      'weird.io': [{ type: 'somethingNew' }],
      'mixed.io': [{ type: 'insecureAcceptAnything' }, { type: 'reject' }],
    },
    'docker-daemon': { '': [{ type: 'insecureAcceptAnything' }] },
  },
}));

const code = (ref: string): string | undefined => {
  try {
    checkPolicy(policy, parseReference(ref));
    return undefined;
  } catch (err) {
    return (err as { code: string }).code;
  }
};

test('policy: scopes from most to least specific', () => {
  assert.deepEqual(policyScopes(parseReference('oci://a.b.example:5000/ns/img:1')), [
    'a.b.example:5000/ns/img:1', 'a.b.example:5000/ns/img', 'a.b.example:5000/ns', 'a.b.example:5000', '*.b.example', '*.example',
  ]);
});

const cases: [string, string | undefined][] = [
  ['oci://quay.io/any/thing:1', undefined],
  ['oci://quay.io/signed/x:1', 'OCI_SIGNATURE_REQUIRED'],
  ['oci://quay.io/sigstore/img2:1', undefined],
  ['oci://build.corp.example/x:1', undefined],
  ['oci://other.io/x:1', 'OCI_POLICY_REJECTED'],
  ['oci://weird.io/x:1', 'OCI_POLICY_REQUIREMENT_UNKNOWN'],
  ['oci://mixed.io/x:1', 'OCI_POLICY_REJECTED'],
];
for (const [ref, expected] of cases) {
  test(`policy: ${ref} → ${expected ?? 'accepted'}`, () => assert.equal(code(ref), expected));
}

test('policy: sigstoreSigned with a key is planned for verification (scope, keys, default signedIdentity), not refused', () => {
  const plan = checkPolicy(policy, parseReference('oci://quay.io/sigstore/img:1'));
  assert.deepEqual(plan, { scope: 'quay.io/sigstore/img', signatures: [{ type: 'sigstoreSigned', scope: 'quay.io/sigstore/img', keyPaths: ['/k'], keyDatas: [], signedIdentity: { type: 'matchRepoDigestOrExact' } }] });
  assert.deepEqual(checkPolicy(policy, parseReference('oci://quay.io/any/thing:1')).signatures, []);
});

test('policy: the transport default "" applies before the global default', () => {
  const p = parsePolicy(JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { '': [{ type: 'insecureAcceptAnything' }] } } }));
  assert.doesNotThrow(() => checkPolicy(p, parseReference('oci://x.io/y')));
});

test('policy: malformed files are config errors', () => {
  for (const text of ['nope', '{}', '{"default": []}', '{"default": [{"type": 1}]}']) {
    assert.throws(() => parsePolicy(text), (e: { code?: string }) => e.code === 'REGISTRY_CONFIG_INVALID', text);
  }
});
