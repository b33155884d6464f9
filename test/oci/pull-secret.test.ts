import assert from 'node:assert/strict';
import { test } from 'node:test';
import { credentialsFromPullSecret, findCredentials, parseAuthFile, parsePullSecret, type Credentials, type PullSecretKind } from '../../src/oci/index.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const config = { auths: { 'quay.io': { auth: b64('q:pw') }, 'registry.local:5000/team': { auth: b64('team:pw') } } };

const cases: [string, string, PullSecretKind, Credentials | undefined][] = [
  ['plain user:pass', 'user:pa:ss', 'user-password', { type: 'basic', username: 'user', password: 'pa:ss' }],
  ['docker auth value', b64('user:pass'), 'docker-auth', { type: 'basic', username: 'user', password: 'pass' }],
  ['upstream double base64', b64(b64('user:pass')), 'double-base64', { type: 'basic', username: 'user', password: 'pass' }],
  ['Ironic test vector f00 → ZjAw', 'ZjAw', 'base64-token', { type: 'registry-token', token: 'f00' }],
  ['bare token', 'ghp_0123456789abcdefABCDEF', 'bare-token', { type: 'registry-token', token: 'ghp_0123456789abcdefABCDEF' }],
  ['JWT-like bare token', 'eyJhbGciOi.eyJzdWIi.sig-_x', 'bare-token', { type: 'registry-token', token: 'eyJhbGciOi.eyJzdWIi.sig-_x' }],
  ['Bearer header', 'Bearer me0w', 'authorization-header', { type: 'registry-token', token: 'me0w' }],
  ['Basic header', `Basic ${b64('a:b')}`, 'authorization-header', { type: 'basic', username: 'a', password: 'b' }],
  ['docker config JSON', JSON.stringify(config), 'docker-config', { type: 'basic', username: 'q', password: 'pw' }],
  ['base64 docker config', b64(JSON.stringify(config)), 'docker-config-base64', { type: 'basic', username: 'q', password: 'pw' }],
  ['surrounding whitespace', `  ${b64('u:p')}\n`, 'docker-auth', { type: 'basic', username: 'u', password: 'p' }],
];

for (const [name, value, kind, creds] of cases) {
  test(`pull secret: ${name}`, () => {
    const secret = parsePullSecret(value);
    assert.equal(secret.kind, kind);
    assert.deepEqual(credentialsFromPullSecret(secret, 'quay.io', 'org/os'), creds);
  });
}

test('pull secret: empty and broken JSON are errors', () => {
  for (const value of ['', '   ', '{"auths": 3}', '{not json']) {
    assert.throws(() => parsePullSecret(value), (e: { code?: string }) => e.code === 'OCI_PULL_SECRET_INVALID');
  }
});

test('pull secret: the kind never contains the secret', () => {
  const secret = parsePullSecret('user:hunter2');
  assert.ok(!JSON.stringify(secret.kind).includes('hunter2'));
});

test('auth file: most specific key first, exact host only', () => {
  const file = parseAuthFile({
    auths: {
      'registry.local:5000': { auth: b64('host:pw') },
      'registry.local:5000/team': { auth: b64('team:pw') },
      'registry.local:5000/team/app': { auth: b64('app:pw') },
      'registry.local': { auth: b64('noport:pw') },
      'evil-registry.local:5000': { auth: b64('evil:pw') },
      'https://other.example/v1/': { auth: b64('legacy:pw') },
      'broken.example': {},
    },
  }, 'test');
  const user = (registry: string, repo: string): string | undefined => {
    const c = findCredentials(file, registry, repo);
    return c?.type === 'basic' ? c.username : c?.type;
  };
  assert.equal(user('registry.local:5000', 'team/app'), 'app');
  assert.equal(user('registry.local:5000', 'team/other'), 'team');
  assert.equal(user('registry.local:5000', 'teamx/app'), 'host');
  assert.equal(user('registry.local', 'x'), 'noport');
  assert.equal(user('registry.local:5001', 'x'), undefined);
  assert.equal(user('other.example', 'x'), 'legacy');
  assert.equal(user('broken.example', 'x'), undefined);
  assert.equal(user('local:5000', 'x'), undefined);
});

test('auth file: Docker Hub aliases and token fields', () => {
  const file = parseAuthFile({
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hub:pw') },
      'ghcr.io': { registrytoken: 'rt' },
      'myacr.azurecr.io': { auth: b64('00000000-0000-0000-0000-000000000000:'), identitytoken: 'refresh' },
    },
  }, 'test');
  assert.deepEqual(findCredentials(file, 'docker.io', 'library/busybox'), { type: 'basic', username: 'hub', password: 'pw' });
  assert.deepEqual(findCredentials(file, 'ghcr.io', 'x/y'), { type: 'registry-token', token: 'rt' });
  assert.deepEqual(findCredentials(file, 'myacr.azurecr.io', 'x'), { type: 'identity-token', token: 'refresh', username: '00000000-0000-0000-0000-000000000000' });
});

test('auth file: legacy .dockercfg shape and username/password fields', () => {
  const file = parseAuthFile({ 'quay.io': { username: 'u', password: 'p' } }, 'test');
  assert.deepEqual(findCredentials(file, 'quay.io', 'a'), { type: 'basic', username: 'u', password: 'p' });
});
