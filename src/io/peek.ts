/**
 * Reading the first bytes of a chunk stream (magic numbers) without losing them, and closing
 * such a stream even when it was never iterated (so a zstd child is killed on early errors).
 * @module
 */

export interface Peeked {
  head: Buffer;
  all: AsyncIterable<Buffer>;
  /** Ends the underlying iteration even if `all` was never iterated (kills a zstd child). */
  close(): Promise<void>;
}

/** Collects chunks until `n` bytes (or the end) so magic bytes can be read; `all` yields them again. */
export async function peek(source: AsyncIterable<Buffer>, n: number): Promise<Peeked> {
  const iterator = source[Symbol.asyncIterator]();
  const taken: Buffer[] = [];
  let length = 0;
  let ended = false;
  while (length < n) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    taken.push(next.value);
    length += next.value.length;
  }
  return {
    head: Buffer.concat(taken),
    all: (async function* () {
      try {
        yield* taken;
        if (ended) return;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value;
        }
      } finally {
        await iterator.return?.();
      }
    })(),
    close: async () => {
      await iterator.return?.();
    },
  };
}

// Closing must never hang a failed write: give up waiting after a few seconds.
export async function closeQuietly(peeked: Peeked | undefined): Promise<void> {
  if (!peeked) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    peeked.close().catch(() => undefined),
    new Promise<void>((resolve) => { timer = setTimeout(resolve, 5000); }),
  ]);
  clearTimeout(timer);
}
