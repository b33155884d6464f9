/**
 * The write side on its own: O_DIRECT device writes (aligned blocks, a buffered unaligned tail,
 * the bytes past the image untouched), the buffered fallback, zstd writing straight to a file
 * (sparse) or a device, its size limit and failures, and the qcow2 sniff of a zstd stream's head.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentError } from '../../src/errors.ts';
import { zstdHead } from '../../src/image/decompress.ts';
import { PhaseClock } from '../../src/image/timing.ts';
import { writeChunks } from '../../src/image/write-chunks.ts';
import { writeZstdToTarget } from '../../src/image/write-zstd.ts';
import { zstdCompress } from '../helpers/registry.ts';
import { attachLoop, loopUnavailable, readHead, tempDir, toolMissing, type LoopDevice } from './helpers.ts';

const MiB = 1024 * 1024;

async function* chunks(bytes: Buffer, size = 16 * 1024, failAt?: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) {
    if (failAt !== undefined && i >= failAt) throw new AgentError('OCI_DIGEST_MISMATCH', 'input went bad');
    yield bytes.subarray(i, i + size);
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// Disk-like: random, zeros, random, with an odd length (not a multiple of 512 or 4096).
const image = Buffer.concat([randomBytes(5 * MiB), Buffer.alloc(3 * MiB), randomBytes(MiB + 12345)]);

describe('image write side', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => { tmp = await tempDir('bootc-agent-target-'); });
  after(() => tmp.cleanup());

  describe('zstd', { skip: toolMissing('zstd') }, () => {
    test('zstdHead: the first decompressed bytes from the stream\'s beginning', async () => {
      const qcow2ish = Buffer.concat([Buffer.from('QFI\xfb\x00\x00\x00\x03', 'latin1'), randomBytes(2 * MiB)]);
      const packed = await zstdCompress(qcow2ish);
      const head = await zstdHead(packed.subarray(0, 256 * 1024), 4);
      assert.deepEqual(head, qcow2ish.subarray(0, 4));
      assert.equal(await zstdHead(Buffer.from('not zstd at all'), 4), undefined);
      assert.equal(await zstdHead(await zstdCompress(Buffer.from('ab')), 4), undefined, 'shorter than asked');
    });

    test('to a file: zstd writes it itself, sparse, exact size', async () => {
      const packed = await zstdCompress(image);
      const path = join(tmp.dir, 'zstd-direct.raw');
      await writeFile(path, randomBytes(20 * MiB)); // truncated when opened
      const seen: number[] = [];
      const clock = new PhaseClock();
      const n = await writeZstdToTarget(path, 'file', chunks(packed), { clock, onWritten: (b) => seen.push(b) });
      assert.equal(n, image.length);
      assert.equal(sha256(await readFile(path)), sha256(image));
      assert.equal(seen.at(-1), image.length);
      const st = await stat(path);
      assert.ok(st.blocks * 512 < image.length, 'the zero run is a hole');
      assert.ok(clock.seconds().sync !== undefined);
    });

    test('a corrupt stream is IMAGE_WRITE_FAILED; the input\'s own error wins over the broken pipe', async () => {
      const packed = await zstdCompress(image);
      const corrupt = Buffer.from(packed);
      corrupt.fill(0x55, 1000, 5000);
      const clock = new PhaseClock();
      await assert.rejects(writeZstdToTarget(join(tmp.dir, 'corrupt.raw'), 'file', chunks(corrupt), { clock }),
        (e: unknown) => e instanceof AgentError && e.code === 'IMAGE_WRITE_FAILED');
      await assert.rejects(writeZstdToTarget(join(tmp.dir, 'failing.raw'), 'file', chunks(packed, 16 * 1024, 64 * 1024), { clock }),
        (e: unknown) => e instanceof AgentError && e.code === 'OCI_DIGEST_MISMATCH');
      await assert.rejects(writeZstdToTarget(join(tmp.dir, 'nozstd.raw'), 'file', chunks(packed), { clock, zstdPath: '/nonexistent/zstd' }),
        (e: unknown) => e instanceof AgentError && e.code === 'COMMAND_NOT_FOUND');
    });
  });

  describe('to a real loop device', () => {
    const reason = loopUnavailable();
    let loop: LoopDevice | undefined;
    const marker = Buffer.alloc(MiB, 0xa5);
    before(async () => {
      if (!reason) loop = await attachLoop(tmp.dir, 16);
    });
    after(() => loop?.detach());

    // The bytes after the image keep what was there (the image's odd tail must not be padded).
    async function fillMarker(): Promise<void> {
      const { open } = await import('node:fs/promises');
      const h = await open(loop!.device, 'r+');
      for (let at = 0; at < 16 * MiB; at += MiB) await h.write(marker, 0, MiB, at);
      await h.sync();
      await h.close();
    }

    for (const direct of [true, false]) {
      test(`writeChunks ${direct ? 'O_DIRECT' : 'buffered'}: exact bytes, odd tail, nothing past the end`, { skip: reason }, async () => {
        await fillMarker();
        const written: number[] = [];
        const n = await writeChunks(loop!.device, 'block', chunks(image, 16 * 1024 + 7), { clock: new PhaseClock(), direct, syncEvery: 4 * MiB, onWritten: (b) => written.push(b) });
        assert.equal(n, image.length);
        const back = await readHead(loop!.device, image.length + 4096);
        assert.equal(sha256(back.subarray(0, image.length)), sha256(image));
        assert.ok(back.subarray(image.length).every((b) => b === 0xa5), 'bytes past the image untouched');
        assert.equal(written.at(-1), image.length);
      });
    }

    test('writeChunks: more than the device holds is the caller\'s limit error', { skip: reason }, async () => {
      const big = Buffer.alloc(17 * MiB, 1);
      await assert.rejects(writeChunks(loop!.device, 'block', chunks(big, MiB), {
        clock: new PhaseClock(), limit: 16 * MiB, onLimit: (b) => new AgentError('IMAGE_TOO_LARGE', `at least ${b}`),
      }), (e: unknown) => e instanceof AgentError && e.code === 'IMAGE_TOO_LARGE');
    });

    test('zstd straight to the device: exact bytes, not sparse, nothing past the end', { skip: reason ?? toolMissing('zstd') }, async () => {
      await fillMarker();
      const n = await writeZstdToTarget(loop!.device, 'block', chunks(await zstdCompress(image)), { clock: new PhaseClock(), syncEvery: 2 * MiB });
      assert.equal(n, image.length);
      const back = await readHead(loop!.device, image.length + 4096);
      assert.equal(sha256(back.subarray(0, image.length)), sha256(image), 'zero run written, not skipped');
      assert.ok(back.subarray(image.length).every((b) => b === 0xa5));
    });

    test('zstd larger than the device: the limit error', { skip: reason ?? toolMissing('zstd') }, async () => {
      const packed = await zstdCompress(Buffer.alloc(20 * MiB, 3));
      await assert.rejects(writeZstdToTarget(loop!.device, 'block', chunks(packed), {
        clock: new PhaseClock(), limit: 16 * MiB, onLimit: (b) => new AgentError('IMAGE_TOO_LARGE', `at least ${b}`),
      }), (e: unknown) => e instanceof AgentError && e.code === 'IMAGE_TOO_LARGE');
    });
  });
});
