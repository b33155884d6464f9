import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { digestOf, EMPTY_JSON_DIGEST, isSupportedDigest, parseManifestDocument } from '../../src/oci/index.ts';
import { Descriptor } from '../../src/oci/schemas.ts';

const fixture = (name: string): Buffer => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const D = 'sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270';

test('image-spec backwards-compatibility vectors: digests over raw bytes', () => {
  const list = fixture('docker-list.json');
  const listDigest = 'sha256:4ffd0883f25635999f04ea543240a27c9a4341979ff7d46a9774f71512eebb1f';
  assert.equal(digestOf(list), listDigest);
  const doc = parseManifestDocument(list, 'application/vnd.docker.distribution.manifest.list.v2+json', listDigest);
  assert.equal(doc.kind, 'index');
  const manifest = fixture('docker-manifest.json');
  const manifestDigest = 'sha256:888206c77cd2811ec47e752ba291e5b7734e3ef137dfd222daadaca39a9f17bc';
  assert.equal(digestOf(manifest), manifestDigest);
  assert.equal(parseManifestDocument(manifest, 'text/plain', manifestDigest).kind, 'manifest');
  // Re-serialising changes the digest: hashing must use the bytes as received.
  assert.notEqual(digestOf(Buffer.from(JSON.stringify(JSON.parse(manifest.toString())))), manifestDigest);
});

test('empty descriptor and zero-length blob digests', () => {
  assert.equal(digestOf(Buffer.from('{}')), EMPTY_JSON_DIGEST);
  assert.equal(EMPTY_JSON_DIGEST, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  assert.equal(Buffer.from('e30=', 'base64').toString(), '{}');
  assert.equal(digestOf(Buffer.alloc(0)), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  const data = Buffer.from('aHR0cHM6Ly9naXRodWIuY29tL29wZW5jb250YWluZXJzCg==', 'base64');
  assert.equal(data.length, 34);
  assert.equal(digestOf(data), 'sha256:2690af59371e9eca9453dc29882643f46e5ca47ec2862bd517b5e17351325153');
  assert.equal(digestOf(Buffer.from('{}'), 'sha512').length, 'sha512:'.length + 128);
});

// image-spec schema/descriptor_test.go; alternate algorithms are grammar-valid but we refuse them
// because we cannot verify them.
const descriptors: [string, Record<string, unknown>, boolean][] = [
  ['valid', { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 7682, digest: D }, true],
  ['zero length', { mediaType: 'application/octet-stream', size: 0, digest: 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' }, true],
  ['no mediaType', { size: 7682, digest: D }, false],
  ['no subtype', { mediaType: 'application', size: 7682, digest: D }, false],
  ['bad first type char', { mediaType: '.foo/bar', size: 7682, digest: D }, false],
  ['bad first subtype char', { mediaType: 'foo/.bar', size: 7682, digest: D }, false],
  ['longest type', { mediaType: `${'1234567890'.repeat(12)}1234567/${'1234567890'.repeat(12)}1234567`, size: 7682, digest: D }, true],
  ['type too long', { mediaType: `${'1234567890'.repeat(12)}12345678/bar`, size: 7682, digest: D }, false],
  ['no size', { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D }, false],
  ['string size', { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: '7682', digest: D }, false],
  ['negative size', { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: -7682, digest: D }, false],
  ['no digest', { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 7682 }, false],
  ['no algorithm', { mediaType: 'a/b', size: 1, digest: `:${D.slice(7)}` }, false],
  ['no hash', { mediaType: 'a/b', size: 1, digest: 'sha256' }, false],
  ['upper-case algorithm', { mediaType: 'a/b', size: 1, digest: `SHA256:${D.slice(7)}` }, false],
  ['upper-case hex', { mediaType: 'a/b', size: 1, digest: D.toUpperCase().replace('SHA256', 'sha256') }, false],
  ['artifactType ok', { mediaType: 'a/b', artifactType: 'application/vnd.oci.image.manifest.v1+json', size: 1, digest: D }, true],
  ['artifactType bad', { mediaType: 'a/b', artifactType: 'foo/.bar', size: 1, digest: D }, false],
  ['alternate algorithm (unverifiable)', { mediaType: 'a/b', size: 1, digest: 'sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564' }, false],
  ['size above 2^53', { mediaType: 'a/b', size: 2 ** 53, digest: D }, false],
];
for (const [name, value, ok] of descriptors) {
  test(`descriptor vector: ${name}`, () => assert.equal(Descriptor.safeParse(value).success, ok));
}

test('digest support: sha256 and sha512 only', () => {
  assert.ok(isSupportedDigest(D));
  assert.ok(isSupportedDigest(`sha512:${'a'.repeat(128)}`));
  assert.ok(!isSupportedDigest(`sha512:${'a'.repeat(64)}`));
  assert.ok(!isSupportedDigest(`sha384:${'a'.repeat(96)}`));
  assert.ok(!isSupportedDigest(`sha256:${'a'.repeat(64)}/../../x`));
});

const manifestCases: [string, string, string | undefined, string][] = [
  ['schema1 by content type', '{"schemaVersion":1}', 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'OCI_MANIFEST_INVALID'],
  ['schema1 by body', '{"schemaVersion":1,"name":"x","fsLayers":[]}', 'application/json', 'OCI_MANIFEST_INVALID'],
  ['ambiguous', JSON.stringify({ schemaVersion: 2, manifests: [], config: { mediaType: 'a/b', digest: D, size: 1 }, layers: [] }), 'application/vnd.oci.image.index.v1+json', 'OCI_MANIFEST_INVALID'],
  ['mediaType contradicts Content-Type', JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }), 'application/vnd.oci.image.manifest.v1+json', 'OCI_MANIFEST_INVALID'],
  ['not JSON', '<html>', 'text/html', 'OCI_MANIFEST_INVALID'],
  ['unknown version', '{"schemaVersion":3,"manifests":[]}', undefined, 'OCI_MANIFEST_INVALID'],
];
for (const [name, body, type, code] of manifestCases) {
  test(`manifest parsing: ${name}`, () => {
    assert.throws(() => parseManifestDocument(Buffer.from(body), type, digestOf(Buffer.from(body))), (e: { code?: string }) => e.code === code);
  });
}

test('manifest parsing: content-type parameters stripped, OCI 1.0 documents without mediaType guessed', () => {
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
  assert.equal(parseManifestDocument(index, 'application/vnd.oci.image.index.v1+json; charset=utf-8', digestOf(index)).kind, 'index');
  assert.equal(parseManifestDocument(index, undefined, digestOf(index)).kind, 'index');
  const unknownFields = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'a/b', digest: D, size: 1, extra: 1 }, layers: [], vendor: { x: 1 } }));
  assert.equal(parseManifestDocument(unknownFields, 'application/octet-stream', digestOf(unknownFields)).kind, 'manifest');
});
