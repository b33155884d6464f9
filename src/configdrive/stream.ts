/**
 * Small streaming stages for decoding a config drive: strict base64, gzip sniffing and a
 * size limit on the decompressed bytes. Each stage is an async generator usable in
 * `stream/promises.pipeline`, so memory stays at a few chunks whatever the input size.
 * @module
 */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { AgentError } from '../errors.ts';
import { MiB } from '../io/sizes.ts';

const BASE64_BODY = /^[A-Za-z0-9+/]*$/;
const BASE64_SNIFF = /^[A-Za-z0-9+/=\s]*$/;

/** A string cut into slices so a large inline value is decoded piece by piece. */
export function* sliceString(value: string, size = MiB): Generator<string> {
  for (let i = 0; i < value.length; i += size) yield value.slice(i, i + size);
}

/** True when the bytes can only be base64 text (the alphabet, padding and whitespace). */
export function looksLikeBase64(head: Uint8Array): boolean {
  return head.length > 0 && BASE64_SNIFF.test(Buffer.from(head).toString('latin1'));
}

function notBase64(reason: string, position: number): AgentError {
  return new AgentError('CONFIGDRIVE_INVALID', `Config drive is not base64 encoded or the content is malformed: ${reason}`, {
    details: { position },
  });
}

// Strict, unlike Buffer.from(…, 'base64'), which silently skips bad characters: anything but
// the alphabet and whitespace, or padding before the end, is an error naming the position.
export async function* decodeBase64(source: AsyncIterable<string | Uint8Array> | Iterable<string>): AsyncGenerator<Buffer> {
  let carry = '';
  let seen = 0;
  let padded = false;
  for await (const chunk of source) {
    const text = (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1')).replace(/\s+/g, '');
    if (text === '') continue;
    if (padded) throw notBase64('data after the "=" padding', seen);
    const pad = text.indexOf('=');
    const body = pad === -1 ? text : text.slice(0, pad);
    if (pad !== -1) {
      const tail = text.slice(pad);
      if (!/^={1,2}$/.test(tail) || (carry.length + body.length + tail.length) % 4 !== 0) {
        throw notBase64('misplaced "=" padding', seen + pad);
      }
      padded = true;
    }
    if (!BASE64_BODY.test(body)) {
      const bad = body.search(/[^A-Za-z0-9+/]/);
      throw notBase64(`unexpected character ${JSON.stringify(body[bad])}`, seen + bad);
    }
    const all = carry + text;
    seen += text.length;
    const usable = padded ? all.length : all.length - (all.length % 4);
    if (usable > 0) yield Buffer.from(all.slice(0, usable), 'base64');
    carry = all.slice(usable);
  }
  if (carry.length > 0) throw notBase64('truncated (length is not a multiple of 4)', seen);
  if (seen === 0) throw notBase64('the value is empty', 0);
}

export function isGzip(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

// zlib failures (bad header, CRC, truncated member) are bad input, not agent bugs.
function gzipError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('Z_')) return err;
  return new AgentError('CONFIGDRIVE_INVALID', `Config drive is not valid gzip: ${(err as Error).message}`, { cause: err });
}

/** Gunzip a byte stream lazily: zlib only produces what the consumer pulls (backpressure). */
export async function* gunzip(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  const input = Readable.from(source);
  const zlib = createGunzip();
  input.on('error', (err) => zlib.destroy(err));
  input.pipe(zlib);
  try {
    for await (const chunk of zlib) yield chunk as Buffer;
  } catch (err) {
    throw gzipError(err);
  } finally {
    input.destroy();
    zlib.destroy();
  }
}

export function tooLarge(maxBytes: number, sizeBytes: number, exact: boolean): AgentError {
  const maxMiB = maxBytes / MiB;
  const sizeMiB = Math.ceil(sizeBytes / MiB);
  const size = exact ? `${sizeMiB} MiB` : `more than ${maxMiB} MiB once decompressed`;
  return new AgentError('CONFIGDRIVE_TOO_LARGE', `Config drive size exceeds maximum limit of ${maxMiB}MiB: the image is ${size}`, {
    details: { max_mib: maxMiB, ...(exact ? { size_mib: sizeMiB, size_bytes: sizeBytes } : { size_bytes_at_least: sizeBytes }) },
  });
}

/**
 * Pass chunks through while the total stays within `maxBytes`. Past the limit, compressed input
 * fails at once (a gzip bomb must not be inflated); raw input, already bounded by its source,
 * is counted to the end so the error can name the real size.
 */
export async function* limitBytes(
  source: AsyncIterable<Uint8Array>,
  maxBytes: number,
  compressed: () => boolean,
): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > maxBytes) {
      if (compressed()) throw tooLarge(maxBytes, total, false);
      continue;
    }
    yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
  if (total > maxBytes) throw tooLarge(maxBytes, total, true);
}
