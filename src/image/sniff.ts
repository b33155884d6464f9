/**
 * What the downloaded bytes are: their compression (as the source declared it, else from the
 * magic bytes) and their disk format (qcow2 magic in the decompressed bytes), and the streams the
 * writers read. A raw zstd image stays compressed, for `zstd` to write straight to the target;
 * its qcow2 check decompresses just the stream's beginning.
 * @module
 */
import { AgentError } from '../errors.ts';
import { peek, type Peeked } from '../io/peek.ts';
import { KiB } from '../io/sizes.ts';
import type { Logger } from '../log/index.ts';
import { decompress, isQcow2, sniffCompression, zstdHead, type StreamCompression } from './decompress.ts';
import type { Opened } from './source.ts';
import { timedOutput, type PhaseClock } from './timing.ts';
import type { DiskFormat, WriteArtifactOptions } from './types.ts';

// Compressed bytes handed to the qcow2 sniff: a zstd block is at most 128 KiB, so its first
// block (and thus the first decompressed bytes) is always inside.
const ZSTD_SNIFF_BYTES = 256 * KiB;

export type SniffedImage = { compression: StreamCompression } & (
  /** `body` is the decompressed stream; without one, zstd writes `compressed` to the target itself. */
  | { format: 'raw'; compressed: AsyncIterable<Buffer>; body: Peeked | undefined }
  | { format: 'qcow2'; body: Peeked }
);

export interface SniffContext {
  opened: Opened;
  options: Pick<WriteArtifactOptions, 'diskFormat' | 'zstdDirect' | 'zstdPath' | 'signal'>;
  clock: PhaseClock;
  log: Logger | undefined;
  shownUrl: string;
  /** Every peek made here is added at once, for the caller to close whatever happens. */
  peeks: Peeked[];
}

function declaredCompression(opened: Opened, head: Buffer): StreamCompression {
  const declared = opened.compression;
  return declared === 'gzip' || declared === 'zstd' || declared === 'xz' ? declared : sniffCompression(head);
}

// Whether zstd can write this image itself: raw, judging by its first decompressed bytes.
async function zstdWritesItself(input: AsyncIterable<Buffer>, ctx: SniffContext): Promise<{ direct: boolean; compressed: AsyncIterable<Buffer> }> {
  const sniffed = await peek(input, ZSTD_SNIFF_BYTES);
  ctx.peeks.push(sniffed);
  const head = await zstdHead(sniffed.head, 4, { signal: ctx.options.signal, zstdPath: ctx.options.zstdPath });
  return { direct: head !== undefined && !isQcow2(head), compressed: sniffed.all };
}

export async function sniffImage(chunks: AsyncIterable<Buffer>, ctx: SniffContext): Promise<SniffedImage> {
  const { opened, options, shownUrl } = ctx;
  const input = await peek(chunks, 8);
  ctx.peeks.push(input);
  if (input.head.length === 0) throw new AgentError('IMAGE_DOWNLOAD_FAILED', `The image at ${shownUrl} is empty`, { details: { url: shownUrl } });
  const compression = declaredCompression(opened, input.head);
  const declaredFormat: DiskFormat | undefined = options.diskFormat ?? opened.diskFormat;
  let compressed = input.all;
  if (compression === 'zstd' && declaredFormat !== 'qcow2' && options.zstdDirect !== false) {
    const zstd = await zstdWritesItself(input.all, ctx);
    compressed = zstd.compressed;
    if (zstd.direct) return { compression, format: 'raw', compressed, body: undefined };
  }
  const output = compression === 'none' ? compressed : timedOutput(decompress(compressed, compression, { signal: options.signal, zstdPath: options.zstdPath }), ctx.clock);
  const body = await peek(output, 4);
  ctx.peeks.push(body);
  const format: DiskFormat = isQcow2(body.head) ? 'qcow2' : 'raw';
  if (declaredFormat === 'qcow2' && format !== 'qcow2') {
    throw new AgentError('IMAGE_FORMAT_UNSUPPORTED', `The image at ${shownUrl} is declared qcow2 but does not start with the qcow2 magic`, { details: { url: shownUrl } });
  }
  if (declaredFormat === 'raw' && format === 'qcow2') ctx.log?.warn({ url: shownUrl }, 'image declared raw is qcow2: converting it');
  return format === 'qcow2' ? { compression, format, body } : { compression, format, compressed, body };
}
