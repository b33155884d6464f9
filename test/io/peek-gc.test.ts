/**
 * The small stream pieces of src/io: peek (the head read ahead and replayed, the source closed
 * whether or not it was iterated) and the scavenge helper.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gcEvery, minorGc } from '../../src/io/gc.ts';
import { closeQuietly, peek } from '../../src/io/peek.ts';

// Yields `parts` and records whether the consumer ended the iteration early.
function source(parts: string[]): { chunks: AsyncGenerator<Buffer>; state: { returned: boolean; pulled: number } } {
  const state = { returned: false, pulled: 0 };
  const chunks = (async function* () {
    try {
      for (const p of parts) {
        state.pulled++;
        yield Buffer.from(p);
      }
    } finally {
      state.returned = true;
    }
  })();
  return { chunks, state };
}

async function collect(it: AsyncIterable<Buffer>): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out).toString();
}

describe('io stream pieces', () => {
  test('peek reads whole chunks until n bytes, and `all` replays them before the rest', async () => {
    const { chunks, state } = source(['ab', 'cd', 'ef', 'gh']);
    const peeked = await peek(chunks, 3);
    assert.equal(peeked.head.toString(), 'abcd');
    assert.equal(state.pulled, 2, 'reads no further than needed');
    assert.equal(await collect(peeked.all), 'abcdefgh');
    assert.equal(state.returned, true);
  });

  test('peek of a stream shorter than n: the whole stream, then the end', async () => {
    const { chunks } = source(['ab']);
    const peeked = await peek(chunks, 8);
    assert.equal(peeked.head.toString(), 'ab');
    assert.equal(await collect(peeked.all), 'ab');
  });

  test('close ends the source even when `all` was never iterated', async () => {
    const { chunks, state } = source(['ab', 'cd', 'ef']);
    const peeked = await peek(chunks, 1);
    await closeQuietly(peeked);
    await closeQuietly(undefined);
    assert.equal(state.returned, true);
  });

  test('gcEvery scavenges once per interval; minorGc never throws', () => {
    assert.doesNotThrow(() => minorGc());
    const tick = gcEvery(10);
    for (let n = 0; n < 100; n += 3) tick(n);
  });
});
