import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWwwAuthenticate, type Challenge } from '../../src/oci/index.ts';

const cases: [string, string | string[], Challenge[]][] = [
  ['docker hub bearer', 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"',
    [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } }]],
  ['basic', 'Basic realm="basic-realm"', [{ scheme: 'basic', params: { realm: 'basic-realm' } }]],
  ['scheme case and spaces', 'BEARER  Realm = "r" ,  Service=svc', [{ scheme: 'bearer', params: { realm: 'r', service: 'svc' } }]],
  ['two challenges in one header', 'Basic realm="a, b", Bearer realm="https://t/x",service="s"',
    [{ scheme: 'basic', params: { realm: 'a, b' } }, { scheme: 'bearer', params: { realm: 'https://t/x', service: 's' } }]],
  ['two headers', ['Negotiate', 'Bearer realm="r"'], [{ scheme: 'negotiate', params: {} }, { scheme: 'bearer', params: { realm: 'r' } }]],
  ['escaped quotes', 'Bearer realm="a\\"b\\\\c",error="invalid_token"', [{ scheme: 'bearer', params: { realm: 'a"b\\c', error: 'invalid_token' } }]],
  ['insufficient scope with several scopes', 'Bearer realm="r",error="insufficient_scope",scope="repository:a:pull repository:b:pull"',
    [{ scheme: 'bearer', params: { realm: 'r', error: 'insufficient_scope', scope: 'repository:a:pull repository:b:pull' } }]],
  ['token68', 'Negotiate abc+/def==, Basic realm="x"', [{ scheme: 'negotiate', params: {}, token68: 'abc+/def==' }, { scheme: 'basic', params: { realm: 'x' } }]],
  ['scheme without params then another', 'Foo, Bearer realm="r"', [{ scheme: 'foo', params: {} }, { scheme: 'bearer', params: { realm: 'r' } }]],
  ['empty', '', []],
  ['trailing comma', 'Bearer realm="r",', [{ scheme: 'bearer', params: { realm: 'r' } }]],
];

for (const [name, header, expected] of cases) {
  test(`WWW-Authenticate: ${name}`, () => {
    assert.deepEqual(parseWwwAuthenticate(header), expected);
  });
}

test('unterminated quoted string does not throw', () => {
  assert.doesNotThrow(() => parseWwwAuthenticate('Bearer realm="oops'));
});
