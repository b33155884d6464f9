import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createStreamHash, WORKER_BUFFER_BYTES, WORKER_BUFFERS } from '../../src/oci/stream-hash.ts';

// Chunks of uneven sizes, some larger than a pool buffer, some spanning two.
function chunked(bytes: Buffer): Buffer[] {
  const sizes = [1, 16 * 1024, WORKER_BUFFER_BYTES - 3, 7, 3 * WORKER_BUFFER_BYTES + 11, 65536];
  const out: Buffer[] = [];
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, bytes.length - offset);
    out.push(bytes.subarray(offset, offset + n));
    offset += n;
  }
  return out;
}

for (const algorithm of ['sha256', 'sha512']) {
  for (const offThread of [false, true]) {
    test(`${algorithm} ${offThread ? 'on a worker thread' : 'on this thread'}: the same digest as node:crypto, peek keeps going`, async () => {
      const bytes = randomBytes(5 * WORKER_BUFFERS * WORKER_BUFFER_BYTES + 12345);
      const hash = createStreamHash(algorithm, offThread);
      const half = Math.floor(bytes.length / 2);
      for (const chunk of chunked(bytes.subarray(0, half))) await hash.update(chunk);
      assert.equal(await hash.peek(), createHash(algorithm).update(bytes.subarray(0, half)).digest('hex'));
      for (const chunk of chunked(bytes.subarray(half))) await hash.update(chunk);
      assert.equal(await hash.digest(), createHash(algorithm).update(bytes).digest('hex'));
    });
  }
}

test('worker: the caller may reuse its chunk as soon as update returns (the bytes were copied)', async () => {
  const hash = createStreamHash('sha256', true);
  const reference = createHash('sha256');
  const chunk = Buffer.alloc(100_000);
  for (let i = 0; i < 40; i++) {
    chunk.fill(i);
    reference.update(chunk);
    await hash.update(chunk);
  }
  assert.equal(await hash.digest(), reference.digest('hex'));
});

test('worker: memory is bounded by the pool: update waits once the worker is a whole pool behind', async () => {
  const hash = createStreamHash('sha512', true);
  const big = Buffer.alloc((WORKER_BUFFERS + 2) * WORKER_BUFFER_BYTES, 1);
  // One call larger than the pool cannot be taken in without waiting for buffers to come back.
  const pending = hash.update(big);
  assert.ok(pending instanceof Promise);
  await pending;
  assert.equal(await hash.digest(), createHash('sha512').update(big).digest('hex'));
});

test('worker: an empty input, and close() without a digest ends the thread (the process is not held)', async () => {
  const empty = createStreamHash('sha256', true);
  assert.equal(await empty.digest(), createHash('sha256').digest('hex'));
  const dropped = createStreamHash('sha256', true);
  await dropped.update(Buffer.alloc(1000));
  dropped.close();
  dropped.close();
  assert.throws(() => dropped.update(Buffer.alloc(1)), (e: { code?: string }) => e.code === 'INTERNAL');
  await assert.rejects(dropped.digest(), (e: { code?: string }) => e.code === 'INTERNAL');
});

test('worker: an unknown algorithm fails the hash with a typed error instead of hanging', async () => {
  const hash = createStreamHash('no-such-hash', true);
  await assert.rejects((async () => {
    await hash.update(Buffer.alloc(10));
    return hash.digest();
  })(), (e: { code?: string; message: string }) => e.code === 'INTERNAL' && /hashing thread/.test(e.message));
});

test('worker: closing while an update waits for a slot ends the wait, nothing rejects unhandled', async () => {
  const hash = createStreamHash('sha256', true);
  const pending = hash.update(Buffer.alloc((WORKER_BUFFERS + 3) * WORKER_BUFFER_BYTES, 2));
  assert.ok(pending instanceof Promise);
  hash.close();
  await pending;
  await assert.rejects(hash.digest(), (e: { code?: string }) => e.code === 'INTERNAL');
});
