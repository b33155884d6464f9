/**
 * write_image of a qcow2 image whose temporary copy goes on a scratch area in the target disk's
 * tail: real loop devices, a real qcow2 made by qemu-img, served by an HTTPS server on
 * 127.0.0.1:0, the step driven through its context. Checks where the copy went (result and
 * progress), that the converted image is on the disk, and that no scratch, mount or loop device
 * is left behind on success and on failure (then the disk is wiped); a disk too small for the
 * image plus the scratch is refused before it is touched. Unit tests: the qcow2 header and the
 * scratch plan.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { AgentError } from '../../src/errors.ts';
import type { Progress } from '../../src/commands/index.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createWriteImageStep, type WriteImageDeps } from '../../src/image/index.ts';
import { MEMORY_HEADROOM_BYTES, memoryRoom, parseQcow2Header, planQcow2Scratch, SCRATCH_GAP_BYTES, SCRATCH_MIN_BYTES } from '../../src/image/qcow2.ts';
import { tempCopyChoice } from '../../src/image/step.ts';
import { createLogger } from '../../src/log/index.ts';
import { createOciClient } from '../../src/oci/index.ts';
import { probe } from '../helpers/tools.ts';
import { attachLoop, loopUnavailable, makeGptImage, readHead, startHttpsServer, tempDir, toolMissing, toQcow2, type HttpsServer, type LoopDevice } from './helpers.ts';

const MiB = 1024 * 1024;
const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function header(fields: { version?: number; backing?: bigint; size?: bigint }): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(0x514649fb, 0);
  b.writeUInt32BE(fields.version ?? 3, 4);
  b.writeBigUInt64BE(fields.backing ?? 0n, 8);
  b.writeUInt32BE(16, 20);
  b.writeBigUInt64BE(fields.size ?? BigInt(64 * MiB), 24);
  return b;
}

const code = (c: string) => (e: unknown) => e instanceof AgentError && e.code === c;

describe('qcow2 header and scratch plan', () => {
  test('the virtual size comes from the header; backing files and odd versions are refused', () => {
    assert.deepEqual(parseQcow2Header(header({}), 'u'), { version: 3, virtualSize: 64 * MiB });
    assert.throws(() => parseQcow2Header(header({ backing: 512n }), 'u'), (e: unknown) => code('IMAGE_FORMAT_UNSUPPORTED')(e) && /backing file/.test((e as Error).message));
    assert.throws(() => parseQcow2Header(header({ version: 1 }), 'u'), code('IMAGE_FORMAT_UNSUPPORTED'));
    assert.throws(() => parseQcow2Header(header({ size: 0n }), 'u'), code('IMAGE_FORMAT_UNSUPPORTED'));
    assert.throws(() => parseQcow2Header(header({}).subarray(0, 20), 'u'), code('IMAGE_FORMAT_UNSUPPORTED'));
  });

  test('the scratch lies beyond the image and a 16 MiB gap, 1 MiB aligned, 2 MiB before the end', () => {
    const disk = 4096 * MiB;
    const known = planQcow2Scratch('/dev/x', disk, 1000 * MiB + 1, 500 * MiB);
    assert.equal(known.sizeBytes, Math.ceil((500 * MiB * 1.1 + 64 * MiB) / MiB) * MiB);
    assert.equal(known.offsetBytes + known.sizeBytes, disk - 2 * MiB);
    assert.equal(known.offsetBytes % MiB, 0);
    // size unknown: everything between the image (+gap) and the tail
    const unknown = planQcow2Scratch('/dev/x', disk, 1000 * MiB + 1, undefined);
    assert.equal(unknown.offsetBytes, 1001 * MiB + SCRATCH_GAP_BYTES);
    assert.equal(unknown.offsetBytes + unknown.sizeBytes, disk - 2 * MiB);
    // small copies still get the smallest xfs
    assert.equal(planQcow2Scratch('/dev/x', disk, MiB, MiB).sizeBytes, SCRATCH_MIN_BYTES);
  });

  test('a disk without room for the image, the gap and the scratch: IMAGE_SCRATCH_NO_SPACE with the numbers', () => {
    assert.throws(() => planQcow2Scratch('/dev/x', 400 * MiB, 64 * MiB, 10 * MiB), (e: unknown) => {
      assert.ok(code('IMAGE_SCRATCH_NO_SPACE')(e));
      const d = (e as AgentError).details;
      assert.equal(d.scratch_bytes_needed, SCRATCH_MIN_BYTES);
      assert.equal(d.scratch_bytes_free, 400 * MiB - 2 * MiB - 64 * MiB - SCRATCH_GAP_BYTES);
      assert.match((e as Error).message, /disk has 400 MiB, the image's virtual size takes 64 MiB/);
      return true;
    });
  });

  test('a temporary directory in RAM has no more room than the memory available less the headroom', async () => {
    const meminfo = async () => `MemTotal: 1000000 kB\nMemAvailable: ${(MEMORY_HEADROOM_BYTES + 10 * MiB) / 1024} kB\n`;
    const shm = await memoryRoom('/dev/shm', meminfo).catch(() => undefined);
    if (shm?.memoryBacked) assert.ok(shm.free <= 10 * MiB, JSON.stringify(shm));
    const root = await memoryRoom('/', meminfo);
    if (!root.memoryBacked) assert.ok(root.free > 10 * MiB, 'a directory on a disk is not bounded by memory');
  });

  test('the mode: instance_info bootc_container_storage, else the option, else auto', () => {
    assert.deepEqual(tempCopyChoice(undefined, undefined), { mode: 'auto', chosenBy: 'option' });
    assert.deepEqual(tempCopyChoice({ uuid: 'n' }, 'memory'), { mode: 'memory', chosenBy: 'option' });
    assert.deepEqual(tempCopyChoice({ uuid: 'n', instance_info: { bootc_container_storage: 'disk' } }, 'memory'), { mode: 'disk', chosenBy: 'instance_info' });
    assert.throws(() => tempCopyChoice({ uuid: 'n', instance_info: { bootc_container_storage: 'Disk' } }, undefined), code('DEPLOY_ARGS_INVALID'));
  });
});

// What a deploy may leave behind of its own scratch: the private directory (named in the
// "scratch area mounted" log record), mounts below it, loop devices over the disk. Other tests
// on this machine may have scratch areas of their own at the same time: only ours count.
function leftovers(disk: LoopDevice, scratchDirs: string[]): { dirs: string[]; mounts: string[]; loops: string } {
  const dirs = scratchDirs.filter((d) => existsSync(d));
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => scratchDirs.some((d) => l.includes(` ${d}/`)));
  const loops = execFileSync('losetup', ['--noheadings', '--output', 'NAME', '--associated', disk.device], { encoding: 'utf8' }).trim();
  return { dirs, mounts, loops };
}

describe('write_image: the qcow2 copy on a scratch area of the target disk', { skip: loopUnavailable() ?? toolMissing('qemu-img', 'mkfs.xfs', 'mount', 'umount', 'openssl') }, () => {
  const runner = createExecaRunner();
  const oci = createOciClient({ registries: { registries: [] }, policy: null, authFilePaths: [] });
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let server: HttpsServer;
  let raw: Buffer;
  let qcow2: Buffer;
  const loops: LoopDevice[] = [];

  before(async () => {
    tmp = await tempDir('qcow2-scratch-');
    server = await startHttpsServer(tmp.dir);
    raw = await makeGptImage(tmp.dir, 48);
    qcow2 = await toQcow2(tmp.dir, raw);
    server.serve('/disk.qcow2', qcow2);
  });
  after(async () => {
    for (const loop of loops) loop.detach();
    await oci.close();
    await server?.close();
    await tmp?.cleanup();
  });

  const disk = async (sizeMiB: number) => {
    const loop = await attachLoop(tmp.dir, sizeMiB);
    loops.push(loop);
    return loop;
  };
  const deps = (extra: Partial<WriteImageDeps> = {}): WriteImageDeps => ({
    runner, oci,
    config: { disk_wait_attempts: 1, disk_wait_delay: 0, include_loop_devices: true, insecure: false, ca_file: server.cert.certPath },
    writeConfigDrive: async () => ({}),
    recordPartitionUuids: () => undefined,
    http: { retries: 0 },
    tempDir: tmp.dir,
    ...extra,
  });
  const imageInfo = (extra: Record<string, unknown> = {}) => ({
    id: 'q', urls: [`${server.url}/disk.qcow2`], disk_format: 'qcow2', os_hash_algo: 'sha256', os_hash_value: sha256hex(qcow2), ...extra,
  });
  const runStep = async (d: WriteImageDeps, loop: LoopDevice, storage: string | undefined, info = imageInfo()) => {
    const reports: Progress[] = [];
    const scratchDirs: string[] = [];
    const log = createLogger({
      level: 'info',
      stream: new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) {
            const entry = JSON.parse(line) as { msg?: string; mountpoint?: string };
            if (entry.msg === 'scratch area mounted' && entry.mountpoint) scratchDirs.push(dirname(entry.mountpoint));
          }
          done();
        },
      }),
    });
    const node = { uuid: 'n1', instance_info: { root_device: { name: loop.device }, ...(storage ? { bootc_container_storage: storage } : {}) }, properties: {} };
    const result = await createWriteImageStep(d).run({ image_info: info }, {
      signal: new AbortController().signal, log, reportProgress: (p) => reports.push(p), node, ports: [],
    } as Parameters<ReturnType<typeof createWriteImageStep>['run']>[1]).catch((err: unknown) => err as AgentError);
    await new Promise((resolve) => setTimeout(resolve, 50)); // pino writes asynchronously
    return { result, reports, scratchDirs };
  };
  const assertNothingLeft = (loop: LoopDevice, scratchDirs: string[], expectScratch: boolean) => {
    assert.equal(scratchDirs.length, expectScratch ? 1 : 0, `scratch areas made: ${scratchDirs.join(', ')}`);
    const left = leftovers(loop, scratchDirs);
    assert.deepEqual(left.dirs, [], 'a scratch directory stayed in /run');
    assert.deepEqual(left.mounts, [], 'a scratch stayed mounted');
    assert.equal(left.loops, '', 'a loop device over the disk stayed attached');
  };

  test('disk (instance_info): the copy is on the scratch beyond the image, the raw image lands on the disk, nothing stays', async () => {
    const loop = await disk(600);
    const { result, reports, scratchDirs } = await runStep(deps(), loop, 'disk');
    assert.ok(!(result instanceof Error), String(result));
    const image = (result as { image: Record<string, unknown> }).image;
    const copy = image.temp_copy as Record<string, unknown>;
    assert.equal(copy.where, 'disk');
    assert.equal(copy.chosen_by, 'instance_info');
    assert.match(String(copy.loop_device), /^\/dev\/loop\d+$/);
    assert.ok(Number(copy.scratch_offset) >= raw.length + SCRATCH_GAP_BYTES, JSON.stringify(copy));
    assert.equal(Number(copy.scratch_offset) + Number(copy.scratch_bytes), 598 * MiB);
    assert.equal(image.bytes, raw.length);
    assert.equal(sha256hex(await readHead(loop.device, raw.length)), sha256hex(raw), 'the converted image is on the disk');
    const told = reports.find((r) => r.temp_copy === 'disk' && r.loop_device);
    assert.ok(told, `no progress report named the scratch: ${JSON.stringify(reports.map((r) => r.message))}`);
    assert.match(String(told.message), /temporary copy on a scratch area of the target disk at \d+ \(\d+ MiB, \/dev\/loop\d+\) \(instance_info\)/);
    assert.equal(told.scratch_offset, copy.scratch_offset);
    assertNothingLeft(loop, scratchDirs, true);
    // the scratch's filesystem signature is gone from the disk's tail
    const tail = probe('blkid', ['-p', '-O', String(copy.scratch_offset), loop.device]);
    assert.doesNotMatch(tail.stdout, /xfs/);
  });

  test('auto with too little memory for the copy: the disk, with the memory refusal as the reason', async () => {
    const loop = await disk(600);
    const { result, reports, scratchDirs } = await runStep(deps({ freeSpace: async () => 65 * MiB }), loop, undefined);
    assert.ok(!(result instanceof Error), String(result));
    const copy = (result as { image: { temp_copy: Record<string, unknown> } }).image.temp_copy;
    assert.equal(copy.where, 'disk');
    assert.equal(copy.chosen_by, 'auto');
    assert.match(String(copy.reason), /needs a temporary copy of \d+ MiB/);
    assert.ok(reports.some((r) => r.reason === copy.reason));
    assert.equal(sha256hex(await readHead(loop.device, raw.length)), sha256hex(raw));
    assertNothingLeft(loop, scratchDirs, true);
  });

  test('auto with room in memory: the copy stays in the temporary directory', async () => {
    const loop = await disk(600);
    const { result, scratchDirs } = await runStep(deps({ config: { ...deps().config, container_storage: 'auto' } }), loop, undefined);
    assert.ok(!(result instanceof Error), String(result));
    const copy = (result as { image: { temp_copy: Record<string, unknown> } }).image.temp_copy;
    assert.deepEqual([copy.where, copy.chosen_by, copy.dir], ['memory', 'auto', tmp.dir]);
    assert.equal(sha256hex(await readHead(loop.device, raw.length)), sha256hex(raw));
    assertNothingLeft(loop, scratchDirs, false);
  });

  test('memory (option) without room: IMAGE_TEMP_NO_SPACE, the disk untouched', async () => {
    const loop = await disk(600);
    execFileSync('sgdisk', ['-n1:0:+1M', loop.device], { stdio: 'ignore' });
    const before = sha256hex(await readHead(loop.device, 64 * 1024));
    const { result, scratchDirs } = await runStep(deps({ freeSpace: async () => 65 * MiB, config: { ...deps().config, container_storage: 'memory' } }), loop, undefined);
    assert.ok(code('IMAGE_TEMP_NO_SPACE')(result), String(result));
    assert.equal(sha256hex(await readHead(loop.device, 64 * 1024)), before);
    assertNothingLeft(loop, scratchDirs, false);
  });

  test('a disk too small for the image and the scratch: IMAGE_SCRATCH_NO_SPACE before the disk is touched', async () => {
    const loop = await disk(300);
    execFileSync('sgdisk', ['-n1:0:+1M', loop.device], { stdio: 'ignore' });
    const before = sha256hex(await readHead(loop.device, 64 * 1024));
    const { result, scratchDirs } = await runStep(deps(), loop, 'disk');
    assert.ok(code('IMAGE_SCRATCH_NO_SPACE')(result), String(result));
    assert.match((result as Error).message, /the disk has 300 MiB, the image's virtual size takes 48 MiB/);
    assert.equal((result as AgentError).details.cleanup, 'untouched');
    assert.equal(sha256hex(await readHead(loop.device, 64 * 1024)), before, 'the disk changed');
    assertNothingLeft(loop, scratchDirs, false);
  });

  test('a checksum mismatch once the copy is on the scratch: no scratch, mount or loop device left, the disk wiped', async () => {
    const loop = await disk(600);
    execFileSync('sgdisk', ['-n1:0:+1M', loop.device], { stdio: 'ignore' });
    const { result, reports, scratchDirs } = await runStep(deps(), loop, 'disk', imageInfo({ os_hash_value: '0'.repeat(64) }));
    assert.ok(code('IMAGE_CHECKSUM_MISMATCH')(result), String(result));
    assert.ok(reports.some((r) => r.temp_copy === 'disk' && r.loop_device), 'the scratch was made');
    assert.equal(((result as AgentError).details.cleanup as Record<string, unknown> | undefined)?.disk ?? (result as AgentError).details.cleanup, 'wiped');
    assert.ok((await readHead(loop.device, 33 * 512)).every((b) => b === 0), 'the disk was not wiped');
    assertNothingLeft(loop, scratchDirs, true);
  });
});
