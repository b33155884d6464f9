/**
 * On-the-fly decompression of an image stream: gzip with Node's zlib; zstd through the `zstd -dc`
 * program. Node 20's zlib has no zstd (it arrived in Node 22.15/23.8 as an experimental API) and
 * we add no npm dependencies, so zstd runs as a child process fed through a pipe: argv array, no
 * shell, killed by its own pid on error or abort. Both keep memory constant: stream buffers are
 * bounded and backpressure reaches the network socket.
 * @module
 */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { AgentError } from '../errors.ts';
import { KiB, MiB } from '../io/sizes.ts';
import type { Compression } from '../oci/index.ts';

export type StreamCompression = Exclude<Compression, 'xz'> | 'xz';

const MAGIC: ReadonlyArray<[StreamCompression, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
];
const QCOW2_MAGIC = [0x51, 0x46, 0x49, 0xfb];

const startsWith = (chunk: Buffer, magic: readonly number[]) => chunk.length >= magic.length && magic.every((b, i) => chunk[i] === b);

/** The compression a stream's first bytes announce ('none' when nothing matches). */
export function sniffCompression(first: Buffer): StreamCompression {
  for (const [name, magic] of MAGIC) if (startsWith(first, magic)) return name;
  return 'none';
}

/** True when the (decompressed) bytes start like a qcow2 image (`QFI\xfb`). */
export function isQcow2(first: Buffer): boolean {
  return startsWith(first, QCOW2_MAGIC);
}

const CHUNK = MiB;

export interface DecompressOptions {
  signal?: AbortSignal | undefined;
  /** The zstd program (default `zstd` on PATH). */
  zstdPath?: string | undefined;
}

/** Decompressed chunks of `input`; errors of the input or of the decompressor end the iteration. */
export function decompress(input: AsyncIterable<Buffer>, compression: StreamCompression, options: DecompressOptions = {}): AsyncIterable<Buffer> {
  if (compression === 'none') return input;
  if (compression === 'gzip') return gunzip(input, options.signal);
  if (compression === 'zstd') return unzstd(input, options);
  throw new AgentError('IMAGE_FORMAT_UNSUPPORTED', 'xz-compressed images are not supported; use zstd or gzip', { details: { compression } });
}

async function* gunzip(input: AsyncIterable<Buffer>, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  const zlib = createGunzip({ chunkSize: 256 * KiB });
  const feeding = pipeline(Readable.from(input, { objectMode: false, highWaterMark: CHUNK }), zlib, signal ? { signal } : {});
  // The pipeline's own rejection is read through the iteration below; avoid an unhandled one.
  feeding.catch(() => undefined);
  try {
    for await (const chunk of zlib) yield chunk as Buffer;
    await feeding;
  } catch (err) {
    throw wrapDecompressError('gzip', err);
  } finally {
    zlib.destroy();
  }
}

async function* unzstd(input: AsyncIterable<Buffer>, options: DecompressOptions): AsyncGenerator<Buffer> {
  const program = options.zstdPath ?? 'zstd';
  const argv = [program, '-d', '-c', '-q'];
  const child = spawn(program, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr: Buffer[] = [];
  let stderrBytes = 0;
  child.stderr.on('data', (c: Buffer) => {
    if (stderrBytes < 4096) stderr.push(c);
    stderrBytes += c.length;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, sig) => resolve({ code, signal: sig }));
  });
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // The input's own error (network, digest) is kept apart from the EPIPE it causes on stdin.
  let inputError: unknown;
  // Errors thrown *into* this generator (Readable.from does so when the pipe breaks) are not the input's.
  const guarded = (async function* () {
    const iterator = input[Symbol.asyncIterator]();
    try {
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await iterator.next();
        } catch (err) {
          inputError = err;
          child.kill('SIGKILL');
          throw err;
        }
        if (next.done) return;
        yield next.value;
      }
    } finally {
      await iterator.return?.();
    }
  })();
  // Feeding stdin runs beside the reading of stdout; `pipeline` gives backpressure both ways.
  const feeding = pipeline(Readable.from(guarded, { objectMode: false, highWaterMark: CHUNK }), child.stdin);
  let feedError: unknown;
  feeding.catch((err: unknown) => {
    feedError = err;
  });
  let finished = false;
  try {
    // A read error is reported after the more telling ones: the input's, a spawn failure, zstd's exit.
    let readError: unknown;
    try {
      for await (const chunk of child.stdout) yield chunk as Buffer;
    } catch (err) {
      readError = err;
    }
    const status = await exited;
    if (inputError) throw inputError;
    checkZstdExit(status, { program, argv, stderr, ...(options.signal ? { signal: options.signal } : {}) });
    if (readError) throw readError;
    await feeding.catch(() => undefined);
    if (feedError) throw feedError;
    finished = true;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (!finished && child.exitCode === null) child.kill('SIGKILL');
    await exited;
  }
}

function wrapDecompressError(kind: string, err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new AgentError('IMAGE_WRITE_FAILED', `The ${kind} stream is corrupt: ${(err as Error).message}`, { cause: err, details: { zlib_code: code } });
  }
  return err;
}

/**
 * The first `n` bytes `compressed` (the beginning of a zstd stream) decompresses to, from a
 * short-lived `zstd -dc` (its complaint about the truncated input is expected and ignored);
 * undefined when that beginning does not yield `n` bytes (the caller then pipes the whole
 * stream through us instead). Used to sniff qcow2 before zstd writes straight to the target.
 */
export async function zstdHead(compressed: Buffer, n: number, options: DecompressOptions = {}): Promise<Buffer | undefined> {
  const program = options.zstdPath ?? 'zstd';
  const child = spawn(program, ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const out: Buffer[] = [];
  let length = 0;
  const closed = new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(false));
    child.once('close', () => resolve(true));
  });
  child.stdin.on('error', () => undefined);
  child.stdout.on('data', (c: Buffer) => {
    out.push(c);
    length += c.length;
    if (length >= n) child.kill('SIGKILL');
  });
  child.stdin.end(compressed);
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await closed;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (options.signal?.aborted) throw new AgentError('CANCELLED', 'The image write was cancelled', { cause: options.signal.reason });
  return length >= n ? Buffer.concat(out).subarray(0, n) : undefined;
}

export interface ZstdToFdOptions extends DecompressOptions {
  /** `--sparse` (a regular file opened empty: zero runs become holes) or `--no-sparse` (a device). */
  sparse: boolean;
  /** Milliseconds the feeding waited for zstd (decompressing, or blocked on the target). */
  onWait?: ((ms: number) => void) | undefined;
}

const FEED_BATCH = 256 * KiB;

/**
 * `zstd -dc` with its stdout on `fd` (the opened target): the decompressed bytes never pass
 * through this process, zstd writes them itself. `input` (the compressed, already verified-on-
 * the-fly stream) is fed to its stdin in batches (one writev per ~256 KiB). Resolves when zstd
 * exited 0 after the whole input; the input's own error wins over the broken pipe it causes.
 * The caller owns `fd` (position, fsync, close).
 */
export async function unzstdToFd(input: AsyncIterable<Buffer>, fd: number, options: ZstdToFdOptions): Promise<void> {
  const program = options.zstdPath ?? 'zstd';
  const argv = [program, '-d', '-c', '-q', options.sparse ? '--sparse' : '--no-sparse'];
  const child = spawn(program, argv.slice(1), { stdio: ['pipe', fd, 'pipe'] });
  const stderr: Buffer[] = [];
  let stderrBytes = 0;
  child.stderr!.on('data', (c: Buffer) => {
    if (stderrBytes < 4096) stderr.push(c);
    stderrBytes += c.length;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, sig) => resolve({ code, signal: sig }));
  });
  const stdin = child.stdin!;
  let stdinGone = false;
  stdin.on('error', () => { stdinGone = true; });
  stdin.once('close', () => { stdinGone = true; });
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const drained = () => new Promise<void>((resolve) => {
    const done = () => {
      stdin.off('drain', done);
      stdin.off('close', done);
      resolve();
    };
    stdin.on('drain', done);
    stdin.on('close', done);
  });
  let inputError: unknown;
  let finished = false;
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    const flush = async () => {
      if (batched === 0 || stdinGone) return;
      // cork/uncork: the batch goes out as one writev, no copy.
      stdin.cork();
      for (const b of batch) stdin.write(b);
      stdin.uncork();
      batch = [];
      batched = 0;
      if (stdin.writableNeedDrain && !stdinGone) {
        const t = performance.now();
        await drained();
        options.onWait?.(performance.now() - t);
      }
    };
    try {
      for await (const chunk of input) {
        if (stdinGone) break;
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= FEED_BATCH) await flush();
      }
      await flush();
    } catch (err) {
      inputError = err;
      child.kill('SIGKILL');
    }
    if (!stdinGone) stdin.end();
    const t = performance.now();
    const status = await exited;
    options.onWait?.(performance.now() - t);
    if (inputError) throw inputError;
    checkZstdExit(status, { program, argv, stderr, ...(options.signal ? { signal: options.signal } : {}) });
    finished = true;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (!finished && child.exitCode === null) child.kill('SIGKILL');
    await exited;
  }
}

type ZstdExit = { code: number | null; signal: NodeJS.Signals | null; error?: Error };

// How a zstd child ended, as our error: not started (missing binary), cancelled, or failed with
// the tail of its stderr (a full target is marked ENOSPC so callers can say IMAGE_TOO_LARGE).
function checkZstdExit(status: ZstdExit, ctx: { program: string; argv: readonly string[]; stderr: Buffer[]; signal?: AbortSignal }): void {
  const { program, argv } = ctx;
  if (status.error) {
    const code = (status.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'COMMAND_NOT_FOUND' : 'IMAGE_WRITE_FAILED';
    throw new AgentError(code, `Cannot run ${program} to decompress the zstd image: ${status.error.message}`, { cause: status.error, details: { argv } });
  }
  if (status.code !== 0) {
    if (ctx.signal?.aborted) throw new AgentError('CANCELLED', 'The image write was cancelled', { cause: ctx.signal.reason });
    const message = Buffer.concat(ctx.stderr).toString('utf8').trim().slice(-500);
    throw new AgentError('IMAGE_WRITE_FAILED', `zstd could not decompress the image (exit ${status.code ?? status.signal}): ${message}`, {
      details: { argv, exit_code: status.code, signal: status.signal, ...(/No space left/i.test(message) ? { errno: 'ENOSPC' } : {}) },
    });
  }
}
