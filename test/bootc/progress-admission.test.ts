import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkAdmission, chooseContainerStorage, scratchBytesFor } from '../../src/bootc/admission.ts';
import { bootcMilestone, createPullTracker } from '../../src/bootc/progress.ts';
import type { AgentError } from '../../src/errors.ts';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const MiB = 1024 * 1024;

describe('pull progress from podman debug output', () => {
  it('completes layers in manifest order on "Applying tar", skips, and the manifest write', () => {
    const t = createPullTracker([{ digest: d('a'), size: 100 }, { digest: d('b'), size: 50 }, { digest: d('c'), size: 10 }]);
    assert.equal(t.feed(`Copying blob ${d('a')}`), undefined);
    assert.equal(t.feed('time="x" level=debug msg="Downloading /v2/os/blobs/sha256:aaa"'), undefined);
    assert.deepEqual(t.feed(`Copying blob ${d('b')} skipped: already exists`), { bytes_done: 50, bytes_total: 160, layers_done: 1, layers_total: 3 });
    assert.deepEqual(t.feed('time="x" level=debug msg="Applying tar in /var/lib/containers/storage/overlay/1/diff"'), { bytes_done: 150, bytes_total: 160, layers_done: 2, layers_total: 3 });
    assert.deepEqual(t.feed('time="x" level=debug msg="Applying tar in /var/lib/containers/storage/overlay/2/diff"'), { bytes_done: 160, bytes_total: 160, layers_done: 3, layers_total: 3 });
    assert.equal(t.feed('Writing manifest to image destination'), undefined);
  });
  it('finishes everything when the manifest is written', () => {
    const t = createPullTracker([{ digest: d('a'), size: 1 }, { digest: d('b'), size: 2 }]);
    assert.deepEqual(t.feed('Writing manifest to image destination'), { bytes_done: 3, bytes_total: 3, layers_done: 2, layers_total: 2 });
  });
});

describe('bootc milestones', () => {
  const lines: Array<[string, string | undefined]> = [
    ['Installing image: docker://r/os@sha256:1', 'installing image'],
    ['Wiping /dev/vda', 'wiping disk'],
    ['Creating root filesystem (xfs) on device /dev/vda4 (size=19.4G)', 'creating root filesystem'],
    ['  Deploying container image', 'deploying image'],
    ['Injected: etc/tmpfiles.d/bootc-root-ssh.conf', 'injecting files'],
    ['Installation complete!', 'installation complete'],
    ['> mkfs.xfs -f /dev/vda4', undefined],
  ];
  for (const [line, milestone] of lines) it(`maps ${JSON.stringify(line)}`, () => assert.equal(bootcMilestone(line), milestone));
});

describe('admission', () => {
  const stat = (freeMiB: number, memoryBacked: boolean) => async () => ({ freeBytes: freeMiB * MiB, memoryBacked });
  it('admits an image that fits and reports the numbers', async () => {
    const r = await checkAdmission({ compressedBytes: 100 * MiB, storagePath: '/x', statStorage: stat(10_000, true), memAvailable: async () => 8000 * MiB });
    assert.equal(r.estimated_unpacked_bytes, 300 * MiB);
    assert.equal(r.needed_storage_bytes, 400 * MiB);
    assert.equal(r.needed_memory_bytes, 656 * MiB);
  });
  it('refuses when the storage is too small, naming the numbers', async () => {
    await assert.rejects(checkAdmission({ compressedBytes: 100 * MiB, unpackedBytes: 250 * MiB, storagePath: '/var/lib/containers', statStorage: stat(300, false), memAvailable: async () => 8000 * MiB }), (e: AgentError) => {
      assert.equal(e.code, 'INSUFFICIENT_SPACE');
      assert.match(e.message, /\/var\/lib\/containers has 300 MiB free but the image needs about 350 MiB \(100 MiB compressed, about 250 MiB unpacked\)/);
      return true;
    });
  });
  it('refuses when memory-backed storage exceeds available memory', async () => {
    await assert.rejects(checkAdmission({ compressedBytes: 600 * MiB, storagePath: '/x', statStorage: stat(100_000, true), memAvailable: async () => 2000 * MiB }), (e: AgentError) => {
      assert.equal(e.code, 'INSUFFICIENT_MEMORY');
      assert.match(e.message, /2000 MiB of memory available but the deploy needs about 2656 MiB/);
      return true;
    });
  });
  it('needs only headroom in memory when storage is on disk', async () => {
    const r = await checkAdmission({ compressedBytes: 600 * MiB, storagePath: '/x', statStorage: stat(100_000, false), memAvailable: async () => 2000 * MiB });
    assert.equal(r.needed_memory_bytes, 256 * MiB);
  });
  it('reads the real machine', async () => {
    const r = await checkAdmission({ compressedBytes: 1, storagePath: '/tmp' });
    assert.ok(r.mem_available_bytes > 0);
    assert.ok(r.storage_free_bytes > 0);
  });
});

describe('container storage: memory or the target disk', () => {
  const stat = (freeMiB: number, memoryBacked: boolean) => async () => ({ freeBytes: freeMiB * MiB, memoryBacked });
  const base = { compressedBytes: 600 * MiB, unpackedBytes: 1800 * MiB, storagePath: '/var/lib/containers' };
  it('auto keeps memory when the image fits, as before', async () => {
    const c = await chooseContainerStorage({ ...base, mode: 'auto', chosenBy: 'option', statStorage: stat(100_000, true), memAvailable: async () => 8000 * MiB });
    assert.equal(c.mode, 'memory');
    assert.equal(c.chosen_by, 'auto');
    assert.equal(c.scratch_bytes, undefined);
    assert.equal(c.admission.needed_memory_bytes, 2656 * MiB);
  });
  it('auto goes to the disk when memory refuses, keeping the refusal as the reason', async () => {
    const c = await chooseContainerStorage({ ...base, mode: 'auto', chosenBy: 'option', statStorage: stat(100_000, true), memAvailable: async () => 2000 * MiB });
    assert.equal(c.mode, 'disk');
    assert.match(c.reason!, /2000 MiB of memory available but the deploy needs about 2656 MiB/);
    assert.equal(c.scratch_bytes, scratchBytesFor(600 * MiB, 1800 * MiB));
    assert.equal(c.scratch_bytes, Math.ceil((2400 * 1.1 + 1024)) * MiB);
    assert.equal(c.admission.needed_memory_bytes, 256 * MiB);
  });
  it('memory refuses as checkAdmission does; disk needs only the headroom; both name who chose', async () => {
    await assert.rejects(chooseContainerStorage({ ...base, mode: 'memory', chosenBy: 'instance_info', statStorage: stat(100, true), memAvailable: async () => 8000 * MiB }), { code: 'INSUFFICIENT_SPACE' });
    const d = await chooseContainerStorage({ ...base, mode: 'disk', chosenBy: 'instance_info', statStorage: stat(100_000, true), memAvailable: async () => 8000 * MiB });
    assert.deepEqual([d.mode, d.chosen_by, d.reason], ['disk', 'instance_info', undefined]);
    await assert.rejects(chooseContainerStorage({ ...base, mode: 'disk', chosenBy: 'option', statStorage: stat(100_000, true), memAvailable: async () => 100 * MiB }), (e: AgentError) => {
      assert.equal(e.code, 'INSUFFICIENT_MEMORY');
      assert.match(e.message, /100 MiB of memory available but the deploy needs about 256 MiB even with container storage on the target disk/);
      return true;
    });
  });
});

