/**
 * `bootc-agent fetch oci://… --output-dir DIR`: every file of one artifact (the platform's entry of
 * an index) written under its title. Each file goes to a hidden temporary name in DIR (titles
 * never start with a dot), is verified by size and digest, synced, and only then renamed; a
 * failure removes the temporary files and leaves earlier files of DIR as they were.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError, isAgentError } from '../errors.ts';
import { formatPlatform, formatReference, selectArtifact, type Credentials, type OciClient, type SelectedArtifact } from '../oci/index.ts';

export interface DirFetchOptions {
  platform?: { os: string; architecture: string; variant?: string } | undefined;
  credentials?: Credentials | undefined;
  signal?: AbortSignal | undefined;
  /** Bytes received over all files, and their total. */
  onProgress?: ((received: number, total: number) => void) | undefined;
  /** Called before each file's download starts. */
  onFile?: ((title: string, size: number) => void) | undefined;
}

export interface DirFetchFile {
  path: string;
  size: number;
  digest: string;
  mediaType: string;
}

export interface DirFetchResult {
  reference: string;
  /** The selected manifest's digest (what `driver_info.deploy_kernel` pins). */
  manifestDigest: string;
  /** What the reference resolved to: the index digest for a multi-platform tag. */
  resolvedDigest: string;
  platform?: string;
  artifactType?: string;
  source: string;
  files: DirFetchFile[];
  seconds: number;
}

async function syncPath(path: string, flags: 'r' | 'r+'): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fetchOne(oci: OciClient, artifact: SelectedArtifact, index: number, dir: string, options: DirFetchOptions, done: { bytes: number; total: number }): Promise<DirFetchFile> {
  const { title, descriptor } = artifact.files[index]!;
  const temp = join(dir, `.${title}.${randomBytes(6).toString('hex')}.partial`);
  options.onFile?.(title, descriptor.size);
  const start = done.bytes;
  try {
    await oci.downloadBlob(artifact, descriptor, createWriteStream(temp, { flags: 'wx', mode: 0o644 }), {
      signal: options.signal,
      credentials: options.credentials,
      onProgress: (p) => options.onProgress?.(start + p.bytes, done.total),
    });
    await syncPath(temp, 'r+');
    const path = join(dir, title);
    await rename(temp, path);
    done.bytes = start + descriptor.size;
    options.onProgress?.(done.bytes, done.total);
    return { path, size: descriptor.size, digest: descriptor.digest, mediaType: descriptor.mediaType };
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Select the artifact for the platform and write all its files into `dir` (created if missing). */
export async function fetchArtifactToDir(oci: OciClient, source: string, dir: string, options: DirFetchOptions = {}): Promise<DirFetchResult> {
  const started = performance.now();
  const artifact = await selectArtifact(oci, source, options);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new AgentError('IMAGE_WRITE_FAILED', `Cannot create ${dir}: ${(err as Error).message}`, { cause: err, details: { dir } });
  }
  const done = { bytes: 0, total: artifact.files.reduce((sum, f) => sum + f.descriptor.size, 0) };
  const files: DirFetchFile[] = [];
  try {
    for (let i = 0; i < artifact.files.length; i++) files.push(await fetchOne(oci, artifact, i, dir, options, done));
    await syncPath(dir, 'r');
  } catch (err) {
    if (isAgentError(err)) throw err;
    throw new AgentError('IMAGE_WRITE_FAILED', `Writing into ${dir} failed: ${(err as Error).message}`, { cause: err, details: { dir } });
  }
  const platform = artifact.platform ? formatPlatform(artifact.platform) : undefined;
  return {
    reference: formatReference(artifact.reference),
    manifestDigest: artifact.digest,
    resolvedDigest: artifact.resolvedDigest,
    ...(platform ? { platform } : {}),
    ...(artifact.artifactType ? { artifactType: artifact.artifactType } : {}),
    source: `${artifact.source.registry}/${artifact.source.repository}`,
    files,
    seconds: (performance.now() - started) / 1000,
  };
}
