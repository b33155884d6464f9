import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compressionOf, disktypeRank, hostPlatform, normalizePlatform, platformScore, safeFileName } from '../../src/oci/index.ts';
import { rankCandidates } from '../../src/oci/select.ts';
import type { Descriptor } from '../../src/oci/index.ts';

const norm: [{ os?: string; architecture: string; variant?: string }, string][] = [
  [{ os: 'linux', architecture: 'x86_64' }, 'linux/amd64/'],
  [{ os: 'linux', architecture: 'x86-64' }, 'linux/amd64/'],
  [{ os: 'linux', architecture: 'amd64', variant: 'v1' }, 'linux/amd64/'],
  [{ os: 'linux', architecture: 'amd64', variant: 'v2' }, 'linux/amd64/v2'],
  [{ os: 'linux', architecture: 'aarch64' }, 'linux/arm64/'],
  [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64/'],
  [{ os: 'linux', architecture: 'arm64', variant: '8' }, 'linux/arm64/'],
  [{ os: 'linux', architecture: 'arm64', variant: 'v9.0' }, 'linux/arm64/v9'],
  [{ os: 'linux', architecture: 'armhf' }, 'linux/arm/v7'],
  [{ os: 'linux', architecture: 'armel' }, 'linux/arm/v6'],
  [{ os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
  [{ os: 'linux', architecture: 'arm', variant: '6' }, 'linux/arm/v6'],
  [{ os: 'Linux', architecture: 'I386' }, 'linux/386/'],
  [{ os: 'macos', architecture: 'arm64' }, 'darwin/arm64/'],
];
for (const [input, expected] of norm) {
  test(`normalize ${JSON.stringify(input)}`, () => {
    const p = normalizePlatform(input);
    assert.equal(`${p.os}/${p.architecture}/${p.variant}`, expected);
  });
}

const amd64 = normalizePlatform({ os: 'linux', architecture: 'amd64' });
const arm64 = normalizePlatform({ os: 'linux', architecture: 'aarch64' });
const matches: [string, ReturnType<typeof normalizePlatform>, { os?: string; architecture?: string; variant?: string } | undefined, number | undefined][] = [
  ['x86_64 entry for amd64 host', amd64, { os: 'linux', architecture: 'x86_64' }, 0],
  ['arm64/v8 for aarch64 host', arm64, { os: 'linux', architecture: 'arm64', variant: 'v8' }, 0],
  ['amd64/v3 does not match plain amd64', amd64, { os: 'linux', architecture: 'amd64', variant: 'v3' }, undefined],
  ['arm64 for amd64 host', amd64, { os: 'linux', architecture: 'arm64' }, undefined],
  ['windows entry', amd64, { os: 'windows', architecture: 'amd64' }, undefined],
  ['no platform', amd64, undefined, 2],
  ['os only', amd64, { os: 'linux' }, 0],
];
for (const [name, wanted, candidate, score] of matches) {
  test(`platform match: ${name}`, () => assert.equal(platformScore(wanted, candidate), score));
}

test('hostPlatform maps node arch names', () => {
  assert.deepEqual(hostPlatform('x64'), { os: 'linux', architecture: 'amd64', variant: '' });
  assert.deepEqual(hostPlatform('arm64'), { os: 'linux', architecture: 'arm64', variant: '' });
});

const d = (n: number, platform?: Descriptor['platform'], annotations?: Record<string, string>): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size: 1,
  ...(platform ? { platform } : {}), ...(annotations ? { annotations } : {}),
});

test('ranking: Ironic disktype order for agent downloads, then index order', () => {
  const entries = [
    d(1, { os: 'linux', architecture: 'amd64' }),
    d(2, { os: 'linux', architecture: 'x86_64' }, { disktype: 'qemu' }),
    d(3, { os: 'linux', architecture: 'aarch64' }, { disktype: 'raw' }),
    d(4, { os: 'linux', architecture: 'x86_64' }, { disktype: 'applehv' }),
    d(5, { os: 'linux', architecture: 'x86_64' }, { disktype: 'hyperv' }),
    d(6, { os: 'linux', architecture: 'x86_64' }, { disktype: 'raw' }),
    d(7, { os: 'linux', architecture: 'amd64' }),
  ].map((descriptor, order) => ({ descriptor, order }));
  const http = rankCandidates(entries, amd64, 'http').map((c) => c.order);
  assert.deepEqual(http, [5, 3, 1, 0, 6]);
  const local = rankCandidates(entries, amd64, 'local').map((c) => c.order);
  assert.deepEqual(local, [1, 5, 3, 0, 6]);
});

test('ranking: exact variant before unspecified, platform-less last within a rank', () => {
  const arm = normalizePlatform({ os: 'linux', architecture: 'arm', variant: 'v7' });
  const entries = [d(1), d(2, { os: 'linux', architecture: 'arm', variant: 'v6' }), d(3, { os: 'linux', architecture: 'armhf' })]
    .map((descriptor, order) => ({ descriptor, order }));
  assert.deepEqual(rankCandidates(entries, arm, 'http').map((c) => c.order), [2, 0]);
});

test('disktype ranks', () => {
  assert.equal(disktypeRank(undefined, 'http'), 100);
  assert.equal(disktypeRank('hyperv', 'http'), undefined);
  assert.equal(disktypeRank('qcow2', 'local'), 1);
});

test('safe file names and compression', () => {
  assert.equal(safeFileName('disk.raw.zst'), 'disk.raw.zst');
  for (const bad of ['../etc/passwd', 'a/b', '..', '.', '', 'x\0y', 'a\\b']) assert.equal(safeFileName(bad), undefined);
  assert.equal(compressionOf('application/vnd.oci.image.layer.v1.tar+zstd'), 'zstd');
  assert.equal(compressionOf('application/vnd.docker.image.rootfs.diff.tar.gzip'), 'gzip');
  assert.equal(compressionOf('application/vnd.oci.image.layer.v1.tar', 'fedora.raw.zst'), 'zstd');
  assert.equal(compressionOf('application/vnd.oci.image.layer.v1.tar', 'disk.qcow2'), 'none');
  assert.equal(compressionOf('application/zstd'), 'zstd');
});
