/**
 * The download side of an image write in one generator: it waits for each chunk, hashes it,
 * counts it and reports progress. One generator rather than a layer per job, because each layer
 * of async iteration costs per chunk, and TLS hands over 16 KiB chunks (65536 per GiB).
 * @module
 */
import { AgentError } from '../errors.ts';
import { gcEvery } from '../io/gc.ts';
import { MiB } from '../io/sizes.ts';
import { createStreamHash, wantsHashThread } from '../oci/stream-hash.ts';
import { ChecksumVerifier, type ExpectedChecksum } from './checksum.ts';
import type { WriteJob } from './job.ts';
import type { Opened } from './source.ts';

// Downloaded bytes between two scavenges (src/io/gc.ts): bounds the dead network buffers held
// while costing little CPU (figures in docs/benchmarks.md).
const GC_EVERY_BYTES = MiB;

export interface MeteredDownload {
  chunks: AsyncGenerator<Buffer>;
  /**
   * `algorithm:hex` of the downloaded bytes, once all of them are in: the expected checksum
   * verified (IMAGE_CHECKSUM_MISMATCH otherwise), else the OCI blob digest (verified by the OCI
   * client), else a sha256 computed here. Computed once; later calls return the same.
   */
  digest(): string;
}

/** `shownUrl` names the source in a checksum mismatch. */
export function meterDownload(job: WriteJob, opened: Opened, checksum: ExpectedChecksum | undefined, shownUrl: string): MeteredDownload {
  // An http(s) size may be unknown: then it counts as large.
  const offThread = wantsHashThread(opened.source.size);
  const verifier = checksum ? new ChecksumVerifier(checksum, offThread) : undefined;
  const sha256 = !verifier && !opened.ociDigest ? createStreamHash('sha256', offThread) : undefined;
  let computed: string | undefined;
  const collect = gcEvery(GC_EVERY_BYTES);
  const { clock } = job;
  async function* chunks(): AsyncGenerator<Buffer> {
    const iterator = opened.source.chunks[Symbol.asyncIterator]();
    try {
      for (;;) {
        const t0 = performance.now();
        const next = await iterator.next();
        const t1 = performance.now();
        clock.add('network', t1 - t0);
        if (next.done) break;
        const chunk = next.value;
        if (verifier || sha256) {
          const hashing = verifier ? verifier.update(chunk) : sha256!.update(chunk);
          if (hashing) await hashing;
          clock.add('hashing', performance.now() - t1);
        }
        job.downloaded += chunk.length;
        collect(job.downloaded);
        job.report();
        yield chunk;
      }
      // The hash of the last bytes is waited for here, so digest() below can answer at once.
      const t = performance.now();
      await verifier?.finish();
      if (sha256) computed = `sha256:${await sha256.digest()}`;
      clock.add('hashing', performance.now() - t);
    } finally {
      verifier?.close();
      sha256?.close();
      await iterator.return?.();
    }
    job.complete = true;
  }
  let digest: string | undefined;
  return {
    chunks: chunks(),
    digest: () => (digest ??= verifier ? verifier.verify(shownUrl) : opened.ociDigest ?? computed ?? missingDigest()),
  };
}

function missingDigest(): never {
  throw new AgentError('INTERNAL', 'The download digest was read before the download finished');
}
