/**
 * The shapes the image pipeline's modules share: what `writeArtifactToTarget` takes and returns,
 * and what an opened source looks like. Types only, so every module of the pipeline can name
 * them without importing another's code.
 * @module
 */
import type { MirrorEntry } from '../oci/mirrors.ts';
import type { CommandRunner } from '../exec/index.ts';
import type { HttpTransportOptions } from '../io/http.ts';
import type { Logger } from '../log/index.ts';
import type { Credentials, DownloadSource, OciClient, SignatureVerification } from '../oci/index.ts';
import type { ExpectedChecksum } from './checksum.ts';
import type { StreamCompression } from './decompress.ts';
import type { FreeSpace, TempCopyMode } from './qcow2.ts';
import type { TargetInfo } from './target.ts';
import type { Phases } from './timing.ts';

export type DiskFormat = 'raw' | 'qcow2';

export interface WriteProgress {
  phase: 'download' | 'convert' | 'partitions';
  /** Bytes received from the source (compressed, as downloaded). */
  bytesDownloaded: number;
  /** Download size, when the source announced it. */
  bytesTotal?: number | undefined;
  /** Bytes written to the target (or to the temporary qcow2 copy). */
  bytesWritten: number;
}

/** Where a qcow2 image's temporary copy was kept (result and progress, snake_case). */
export type TempCopy = {
  /** `auto`, or what asked for the mode: the agent option or the node's instance_info. */
  chosen_by: 'auto' | 'option' | 'instance_info';
  /** Why auto chose the disk: the memory refusal. */
  reason?: string;
} & (
  | { where: 'memory'; dir: string; free_bytes: number }
  | { where: 'disk'; scratch_offset: number; scratch_bytes: number; loop_device?: string }
);

export interface WriteArtifactOptions {
  /** `oci://…`, `https://…` or `http://…`; a list is tried in order until one starts. */
  source: string | readonly string[];
  /** A block device (written in place) or a file path (created or truncated). */
  target: string;
  runner: CommandRunner;
  /** Needed for `oci://` sources. */
  oci?: OciClient | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: WriteProgress) => void) | undefined;
  log?: Logger | undefined;
  /** Verified over the downloaded bytes; OCI blobs are also verified against their digest. */
  checksum?: ExpectedChecksum | undefined;
  /** Fail when an http(s) source has no checksum (the write_image step sets this). */
  requireChecksum?: boolean | undefined;
  /** Extra request headers for http(s) sources (e.g. `authorization`). */
  headers?: Record<string, string> | undefined;
  /** OCI: credentials for the image's registry. */
  credentials?: Credentials | undefined;
  /** OCI: wanted platform (default: this host). */
  platform?: { os?: string; architecture: string; variant?: string } | undefined;
  /** OCI: Ironic's `image_download_source` for the disktype ranking (default `http`: raw first). */
  downloadSource?: DownloadSource | undefined;
  /** OCI: the node's mirrors (`image_registry_mirrors`), over the agent's. */
  registryMirrors?: readonly MirrorEntry[] | undefined;
  /** Declared disk format; qcow2 content is detected by its magic bytes either way. */
  diskFormat?: DiskFormat | undefined;
  /** http(s) transport: dispatcher, CA, insecure, timeouts, deadline, retries (default 3 here). */
  http?: HttpTransportOptions | undefined;
  /** Where a qcow2 image's temporary copy is kept (default: os.tmpdir(), RAM in a ramdisk). */
  tempDir?: string | undefined;
  freeSpace?: FreeSpace | undefined;
  /**
   * Where a qcow2 image's temporary copy may go: `memory` (the default: `tempDir`), `disk` (a
   * scratch area in the target disk's tail, beyond the image), `auto` (disk when it does not fit
   * in memory); `chosenBy` is reported with it.
   */
  tempCopy?: { mode: TempCopyMode; chosenBy: 'option' | 'instance_info' } | undefined;
  /** Told where the qcow2 copy goes (again once a scratch's loop device is known). */
  onTempCopy?: ((copy: TempCopy) => void) | undefined;
  /** Called before a scratch area writes the disk, then with its private directory once made (the command journal). */
  onScratch?: ((event: { kind: 'writing' } | { kind: 'created'; dir: string }) => void) | undefined;
  /** Test seam: /proc/meminfo's text (the room a temporary directory in RAM has). */
  meminfo?: (() => Promise<string>) | undefined;
  /** Erase a block device's metadata (or delete a file) after a failure once writing began (default true). */
  wipeOnFailure?: boolean | undefined;
  zstdPath?: string | undefined;
  /**
   * zstd raw images: let `zstd` write the decompressed bytes straight to the target (default
   * true); false pipes them through this process like gzip.
   */
  zstdDirect?: boolean | undefined;
}

export interface WriteArtifactResult {
  /** Bytes now on the target (raw size; for qcow2 the virtual size). */
  bytes: number;
  /** Bytes received from the source. */
  downloadedBytes: number;
  /** `algorithm:hex` of the downloaded bytes: the verified checksum, the OCI blob digest, or a sha256 computed here. */
  digest: string;
  /** Wall time of the whole call. */
  seconds: number;
  /** Seconds each stage held the pipeline up (they overlap; see PhaseClock). */
  phases: Phases;
  /** The URL that was used (query and credentials redacted). */
  source: string;
  target: TargetInfo;
  diskFormat: DiskFormat;
  compression: StreamCompression;
  checksumVerified: boolean;
  oci?: {
    reference: string; manifestDigest: string; blobDigest: string; fileName?: string | undefined;
    /** Where the blob came from (the source that served its end): `{registry, repository, mirror}`. */
    source?: { registry: string; repository: string; mirror: boolean } | undefined;
    /** The signatures policy.json required, verified before a byte was read. */
    signatures?: SignatureVerification[] | undefined;
  } | undefined;
  /** qcow2: where the temporary copy was kept. */
  tempCopy?: TempCopy | undefined;
  /** Commands that re-read the partition table successfully (block devices). */
  partitionsReread: string[];
}

/** A source once it answered: its bytes, still to be read. */
export interface OpenedSource {
  chunks: AsyncIterable<Buffer>;
  /** Bytes the source announced (Content-Length, blob size), when it did. */
  size?: number | undefined;
  /** Ends the transfer and whatever was opened for it. */
  close(): Promise<void>;
}
