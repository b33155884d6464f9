import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReference, parseReference, toPodmanReference } from '../../src/oci/index.ts';

const D256 = `sha256:${'a'.repeat(64)}`;
const D512 = `sha512:${'b'.repeat(128)}`;

const valid: [string, { registry: string; repository: string; tag: string | undefined; digest: string | undefined }, string][] = [
  ['oci://quay.io/org/os:42', { registry: 'quay.io', repository: 'org/os', tag: '42', digest: undefined }, 'quay.io/org/os:42'],
  ['oci://quay.io/org/os', { registry: 'quay.io', repository: 'org/os', tag: 'latest', digest: undefined }, 'quay.io/org/os:latest'],
  [`oci://127.0.0.1:5000/a/b/c@${D256}`, { registry: '127.0.0.1:5000', repository: 'a/b/c', tag: undefined, digest: D256 }, `127.0.0.1:5000/a/b/c@${D256}`],
  [`oci://host:5000/ns/repo:v1@${D256}`, { registry: 'host:5000', repository: 'ns/repo', tag: 'v1', digest: D256 }, `host:5000/ns/repo@${D256}`],
  [`oci://host/repo:@${D512}`, { registry: 'host', repository: 'repo', tag: undefined, digest: D512 }, `host/repo@${D512}`],
  ['oci://myregistry/foo', { registry: 'myregistry', repository: 'foo', tag: 'latest', digest: undefined }, 'myregistry/foo:latest'],
  ['oci://Registry.Example.COM/x', { registry: 'registry.example.com', repository: 'x', tag: 'latest', digest: undefined }, 'registry.example.com/x:latest'],
  ['oci://[::1]:5000/x:t', { registry: '[::1]:5000', repository: 'x', tag: 't', digest: undefined }, '[::1]:5000/x:t'],
  ['busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest', digest: undefined }, 'docker.io/library/busybox:latest'],
  ['busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36', digest: undefined }, 'docker.io/library/busybox:1.36'],
  ['user/app', { registry: 'docker.io', repository: 'user/app', tag: 'latest', digest: undefined }, 'docker.io/user/app:latest'],
  ['docker.io/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest', digest: undefined }, 'docker.io/library/busybox:latest'],
  ['oci://index.docker.io/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest', digest: undefined }, 'docker.io/library/busybox:latest'],
  ['oci://registry-1.docker.io/library/busybox:1', { registry: 'docker.io', repository: 'library/busybox', tag: '1', digest: undefined }, 'docker.io/library/busybox:1'],
  ['docker://quay.io/a/b:c', { registry: 'quay.io', repository: 'a/b', tag: 'c', digest: undefined }, 'quay.io/a/b:c'],
  ['localhost:5000/x', { registry: 'localhost:5000', repository: 'x', tag: 'latest', digest: undefined }, 'localhost:5000/x:latest'],
  ['localhost/x', { registry: 'localhost', repository: 'x', tag: 'latest', digest: undefined }, 'localhost/x:latest'],
  ['oci://h/a.b_c__d-e--f/g:T_1.x-y', { registry: 'h', repository: 'a.b_c__d-e--f/g', tag: 'T_1.x-y', digest: undefined }, 'h/a.b_c__d-e--f/g:T_1.x-y'],
];

for (const [input, expected, podman] of valid) {
  test(`parses ${input}`, () => {
    const ref = parseReference(input);
    assert.deepEqual(ref, expected);
    assert.equal(toPodmanReference(ref), podman);
    assert.ok(!toPodmanReference(ref).startsWith('oci:'));
  });
}

const invalid = [
  '', 'oci://', 'oci://quay.io', 'oci://quay.io/', 'oci://quay.io/Upper/case', 'oci://quay.io/a//b',
  'oci://quay.io/a/b:', 'oci://quay.io/a/b:-tag', `oci://quay.io/a/b:${'t'.repeat(129)}`,
  'oci://quay.io/a/b@sha256:abc', `oci://quay.io/a/b@sha256:${'A'.repeat(64)}`, `oci://quay.io/a/b@md5:${'a'.repeat(32)}`,
  `oci://quay.io/a/b@sha256+b64:${'a'.repeat(64)}`, 'oci://quay.io/a_/b', 'oci://quay.io/-a/b', 'oci://-bad-.io/a',
  `oci://quay.io/${'a'.repeat(250)}`, 'oci://quay.io/a/b@@x', 'oci://host/a/b:t:u',
];
for (const input of invalid) {
  test(`rejects ${JSON.stringify(input.slice(0, 60))}`, () => {
    assert.throws(() => parseReference(input), (err: { code?: string }) => err.code === 'OCI_REFERENCE_INVALID');
  });
}

test('formatReference round-trips', () => {
  const url = `oci://host:5000/ns/repo:v1@${D256}`;
  assert.equal(formatReference(parseReference(url)), url);
});
