/**
 * Image checksums the way ironic-python-agent reads them from `image_info`: `os_hash_algo` +
 * `os_hash_value` first, else the legacy `checksum`, whose algorithm is guessed from its length
 * (128 hex → sha512, 64 → sha256, 32 → md5). MD5 is refused unless explicitly allowed (IPA's
 * `md5_enabled`, off by default). Verification is over the bytes as downloaded.
 * @module
 */
import { createHash, getHashes } from 'node:crypto';
import { AgentError } from '../errors.ts';
import { createStreamHash, type StreamHash } from '../oci/stream-hash.ts';

export interface ExpectedChecksum {
  /** A Node/OpenSSL hash name: `sha256`, `sha512`, `md5`, … */
  algorithm: string;
  /** Lower-case hex. */
  value: string;
}

export interface ChecksumFields {
  os_hash_algo?: unknown;
  os_hash_value?: unknown;
  checksum?: unknown;
}

const BY_LENGTH: Record<number, string> = { 128: 'sha512', 64: 'sha256', 32: 'md5' };

function unsupported(message: string, details: Record<string, unknown> = {}): AgentError {
  return new AgentError('IMAGE_CHECKSUM_UNSUPPORTED', message, { details });
}

/** Validate an algorithm name and value pair; the value must be hex of the right length. */
export function checkChecksum(algorithm: string, value: string, allowMd5: boolean): ExpectedChecksum {
  const algo = algorithm.trim().toLowerCase();
  if (algo === 'md5' && !allowMd5) {
    throw unsupported('The image checksum uses MD5, which this agent does not accept (provide os_hash_algo/os_hash_value with sha256 or sha512)', { algorithm: algo });
  }
  if (!getHashes().includes(algo)) throw unsupported(`The image checksum algorithm "${algo}" is not supported by this ramdisk`, { algorithm: algo });
  const hex = value.trim().toLowerCase();
  const length = createHash(algo).digest().length * 2;
  if (!/^[0-9a-f]+$/.test(hex) || hex.length !== length) {
    throw new AgentError('DEPLOY_ARGS_INVALID', `The image checksum is not ${length} hex digits of ${algo}`, { details: { algorithm: algo, length: hex.length } });
  }
  return { algorithm: algo, value: hex };
}

/** `sha256:abc…` (CLI and OCI style) → algorithm + value. */
export function parseChecksumString(text: string, allowMd5: boolean): ExpectedChecksum {
  const m = /^([a-z0-9-]+):([0-9a-fA-F]+)$/.exec(text.trim());
  if (!m) throw new AgentError('DEPLOY_ARGS_INVALID', `Checksum "${text.slice(0, 40)}" is not <algorithm>:<hex>`);
  return checkChecksum(m[1]!, m[2]!, allowMd5);
}

/** The checksum named by `image_info`, or undefined when none is given. */
export function checksumFromImageInfo(info: ChecksumFields, allowMd5: boolean): ExpectedChecksum | undefined {
  const algo = info.os_hash_algo;
  const value = info.os_hash_value;
  if (algo !== undefined && algo !== null || value !== undefined && value !== null) {
    if (typeof algo !== 'string' || !algo) throw new AgentError('DEPLOY_ARGS_INVALID', "Image 'os_hash_algo' must be a non-empty string.");
    if (typeof value !== 'string' || !value) throw new AgentError('DEPLOY_ARGS_INVALID', "Image 'os_hash_value' must be a non-empty string.");
    return checkChecksum(algo, value, allowMd5);
  }
  const legacy = info.checksum;
  if (legacy === undefined || legacy === null) return undefined;
  if (typeof legacy !== 'string' || !legacy) throw new AgentError('DEPLOY_ARGS_INVALID', "Image 'checksum' must be a non-empty string.");
  if (/^https?:\/\//i.test(legacy)) throw unsupported('Checksum files given by URL are not supported; send os_hash_algo/os_hash_value');
  const guessed = BY_LENGTH[legacy.trim().length];
  if (!guessed) throw unsupported(`Cannot tell the algorithm of a ${legacy.trim().length}-character checksum`, { length: legacy.trim().length });
  return checkChecksum(guessed, legacy, allowMd5);
}

/**
 * A running hash with its expected value. `update` may return a promise (the hashing thread is
 * behind: await it); `finish()` once every byte was added, then `verify()` throws
 * IMAGE_CHECKSUM_MISMATCH or returns `algorithm:hex`.
 */
export class ChecksumVerifier {
  readonly expected: ExpectedChecksum;
  readonly #hash: StreamHash;
  #actual: string | undefined;

  constructor(expected: ExpectedChecksum, offThread = false) {
    this.expected = expected;
    this.#hash = createStreamHash(expected.algorithm, offThread);
  }

  update(chunk: Buffer): Promise<void> | undefined {
    return this.#hash.update(chunk);
  }

  async finish(): Promise<void> {
    this.#actual ??= await this.#hash.digest();
  }

  /** Ends the hashing (and its thread) when the download stopped before the end. */
  close(): void {
    this.#hash.close();
  }

  verify(source: string): string {
    const actual = this.#actual;
    if (actual === undefined) throw new AgentError('INTERNAL', 'The image checksum was read before the download finished');
    if (actual !== this.expected.value) {
      throw new AgentError('IMAGE_CHECKSUM_MISMATCH', `The image downloaded from ${source} has ${this.expected.algorithm} ${actual}, expected ${this.expected.value}`, {
        details: { algorithm: this.expected.algorithm, expected: this.expected.value, actual, source },
      });
    }
    return `${this.expected.algorithm}:${actual}`;
  }
}
