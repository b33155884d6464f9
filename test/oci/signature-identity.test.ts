import assert from 'node:assert/strict';
import { test } from 'node:test';
import { identityMatches, parseIdentity, type DockerIdentity } from '../../src/oci/signatures/identity.ts';
import type { SignedIdentity } from '../../src/oci/signatures/requirement.ts';

const id = (s: string): DockerIdentity => {
  const parsed = parseIdentity(s);
  assert.ok(parsed, s);
  return parsed;
};
const D = `sha256:${'a'.repeat(64)}`;

test('signature identity: a repository without tag stays tagless; Docker Hub names are normalised', () => {
  assert.deepEqual(id('quay.io/org/app'), { name: 'quay.io/org/app', tag: undefined, digest: undefined });
  assert.deepEqual(id('busybox:1'), { name: 'docker.io/library/busybox', tag: '1', digest: undefined });
  assert.deepEqual(id('127.0.0.1:5000/a/b'), { name: '127.0.0.1:5000/a/b', tag: undefined, digest: undefined });
  assert.equal(parseIdentity('Not A Ref!'), undefined);
});

const cases: [SignedIdentity, string, string, boolean][] = [
  [{ type: 'matchExact' }, 'quay.io/o/a:1', 'quay.io/o/a:1', true],
  [{ type: 'matchExact' }, 'quay.io/o/a:1', 'quay.io/o/a:2', false],
  [{ type: 'matchExact' }, 'quay.io/o/a:1', 'quay.io/o/a', false],
  [{ type: 'matchRepoDigestOrExact' }, `quay.io/o/a@${D}`, 'quay.io/o/a', true],
  [{ type: 'matchRepoDigestOrExact' }, `quay.io/o/a@${D}`, 'quay.io/o/b', false],
  [{ type: 'matchRepoDigestOrExact' }, 'quay.io/o/a:1', 'quay.io/o/a:1', true],
  [{ type: 'matchRepoDigestOrExact' }, 'quay.io/o/a:1', 'quay.io/o/a', false],
  [{ type: 'matchRepository' }, 'quay.io/o/a:1', 'quay.io/o/a:9', true],
  [{ type: 'matchRepository' }, 'quay.io/o/a:1', 'quay.io/o/ab', false],
  [{ type: 'exactReference', dockerReference: 'quay.io/x/y:2' }, 'mirror.local/o/a:1', 'quay.io/x/y:2', true],
  [{ type: 'exactReference', dockerReference: 'quay.io/x/y:2' }, 'mirror.local/o/a:1', 'quay.io/x/y:3', false],
  [{ type: 'exactReference', dockerReference: 'quay.io/x/y' }, 'mirror.local/o/a:1', 'quay.io/x/y', false],
  [{ type: 'exactRepository', dockerRepository: 'quay.io/x/y' }, 'mirror.local/o/a:1', 'quay.io/x/y:anything', true],
  [{ type: 'exactRepository', dockerRepository: 'quay.io/x/y' }, 'mirror.local/o/a:1', 'quay.io/x/z', false],
  [{ type: 'remapIdentity', prefix: 'mirror.local/o', signedPrefix: 'quay.io/org' }, `mirror.local/o/a@${D}`, 'quay.io/org/a', true],
  [{ type: 'remapIdentity', prefix: 'mirror.local/o', signedPrefix: 'quay.io/org' }, 'mirror.local/o/a:1', 'quay.io/org/a:1', true],
  [{ type: 'remapIdentity', prefix: 'mirror.local/o', signedPrefix: 'quay.io/org' }, 'mirror.local/o/a:1', 'mirror.local/o/a:1', false],
  [{ type: 'remapIdentity', prefix: 'mirror.local/o', signedPrefix: 'quay.io/org' }, 'mirror.local/ox/a:1', 'mirror.local/ox/a:1', true],
  [{ type: 'remapIdentity', prefix: 'mirror.local', signedPrefix: 'quay.io' }, `mirror.local/o/a@${D}`, 'quay.io/o/a', true],
];
for (const [rule, image, signed, expected] of cases) {
  test(`signedIdentity ${JSON.stringify(rule)}: image ${image}, signed ${signed} → ${expected}`, () => {
    assert.equal(identityMatches(rule, id(image), id(signed)), expected);
  });
}
