/**
 * On-the-fly decompression: gzip (zlib) and zstd (the `zstd` program in a pipe) round trips,
 * corrupt streams, and the input's own error winning over the decompressor's broken pipe.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { AgentError } from '../../src/errors.ts';
import { decompress, isQcow2, sniffCompression } from '../../src/image/decompress.ts';
import { zstdCompress } from '../helpers/registry.ts';
import { toolMissing } from './helpers.ts';

async function* chunks(bytes: Buffer, size = 65536, failAt?: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) {
    if (failAt !== undefined && i >= failAt) throw new AgentError('OCI_DIGEST_MISMATCH', 'input went bad');
    yield bytes.subarray(i, i + size);
  }
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

const data = Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.alloc(2 * 1024 * 1024)]);

describe('decompress', { skip: toolMissing('zstd') }, () => {
  test('magic bytes', async () => {
    assert.equal(sniffCompression(gzipSync(Buffer.from('x'))), 'gzip');
    assert.equal(sniffCompression(await zstdCompress(Buffer.from('x'))), 'zstd');
    assert.equal(sniffCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz');
    assert.equal(sniffCompression(Buffer.alloc(512)), 'none');
    assert.equal(isQcow2(Buffer.from('QFI\xfb\x00\x00\x00\x03', 'latin1')), true);
    assert.equal(isQcow2(Buffer.from('QFI')), false);
  });

  for (const kind of ['gzip', 'zstd'] as const) {
    test(`${kind}: round trip in chunks`, async () => {
      const packed = kind === 'gzip' ? gzipSync(data) : await zstdCompress(data);
      assert.ok((await collect(decompress(chunks(packed, 1000 + 7), kind))).equals(data));
    });

    test(`${kind}: a corrupt stream fails with IMAGE_WRITE_FAILED`, async () => {
      const packed = kind === 'gzip' ? gzipSync(data) : await zstdCompress(data);
      const corrupt = Buffer.from(packed);
      for (let i = 64; i < corrupt.length; i += 997) corrupt[i] = corrupt[i]! ^ 0xff;
      await assert.rejects(collect(decompress(chunks(corrupt), kind)), (e: unknown) => {
        assert.ok(e instanceof AgentError, String(e));
        assert.equal(e.code, 'IMAGE_WRITE_FAILED', e.message);
        return true;
      });
    });

    test(`${kind}: the input's own error is what the caller sees`, async () => {
      const packed = kind === 'gzip' ? gzipSync(data) : await zstdCompress(data);
      await assert.rejects(collect(decompress(chunks(packed, 65536, 65536 * 3), kind)), (e: unknown) => {
        assert.ok(e instanceof AgentError, String(e));
        assert.equal(e.code, 'OCI_DIGEST_MISMATCH', e.message);
        return true;
      });
    });
  }

  test('zstd: a missing program is COMMAND_NOT_FOUND', async () => {
    const packed = await zstdCompress(data);
    await assert.rejects(collect(decompress(chunks(packed), 'zstd', { zstdPath: '/nonexistent/zstd' })), (e: unknown) => e instanceof AgentError && e.code === 'COMMAND_NOT_FOUND');
  });

  test('xz is unsupported', () => {
    assert.throws(() => decompress(chunks(Buffer.alloc(10)), 'xz'), (e: unknown) => e instanceof AgentError && e.code === 'IMAGE_FORMAT_UNSUPPORTED');
  });
});
