/**
 * OCI registry client: references, manifests, auth, verified blob streams, platform/artifact
 * selection, registries.conf, certs.d and policy.json; and the push side (blob uploads, manifest
 * and index PUTs, the file-artifact layout `oras push` makes).
 *
 * @example
 * const client = createOciClient({ log });
 * const secret = parsePullSecret(step.args.oci_pull_secret);
 * log.info({ shape: secret.kind }, 'pull secret found');
 * const ref = parseReference('oci://quay.io/org/os:42');
 * const credentials = credentialsFromPullSecret(secret, ref.registry, ref.repository);
 * const image = await client.inspectImage(ref, { kind: 'bootc-image', credentials, signal });
 * if (image.totalCompressedSize > freeBytes) throw …;
 * await runner.run('podman', ['pull', '--', image.podmanReference], { signal });
 *
 * @example
 * const disk = await client.inspectImage('oci://registry.local/disks/fedora:41', { kind: 'artifact', signal });
 * await client.downloadBlob(disk, disk.layers[0]!, createWriteStream(`/tmp/${disk.fileName}`), {
 *   signal, onProgress: ({ bytes, total }) => log.debug({ bytes, total }, 'downloading'),
 * });
 *
 * @example
 * const pusher = await openRepositoryPusher(client, 'oci://registry.local/ramdisk', { credentials });
 * const layer = bufferBlob(kernelBytes);
 * await pusher.pushBlob(bufferBlob(EMPTY_CONFIG_BYTES));
 * await pusher.pushBlob(layer, { chunkSize: 8 << 20 });
 * const manifest = artifactManifest({ artifactType: 'application/vnd.example.kernel.v1', files: [{ title: 'vmlinuz', mediaType: 'application/octet-stream', ...layer }] });
 * const pushed = await pusher.pushManifest(manifest, MEDIA_TYPES.ociManifest, 'v1');
 * @module
 */
import { OciClient, type OciClientOptions } from './client.ts';

export { OciClient } from './client.ts';
export type { BlobSource, OciClientOptions } from './client.ts';
export type { CallOptions, ResolvedImage } from './resolver.ts';
export type { ImageInspection, ImageKind, InspectOptions, LayerInfo } from './inspect.ts';
export { DEFAULT_UNCOMPRESSED_SIZE_ANNOTATIONS } from './inspect.ts';
export type { BlobOptions, BlobProgress } from './blob.ts';
export {
  apiHost, formatName, formatReference, parseReference, referenceTarget, toPodmanReference, withDigest,
} from './reference.ts';
export type { ImageReference } from './reference.ts';
export { digestOf, EMPTY_JSON_DIGEST, isSupportedDigest, parseDigest } from './digest.ts';
export type { DigestAlgorithm } from './digest.ts';
export { parseWwwAuthenticate } from './challenge.ts';
export type { Challenge } from './challenge.ts';
export { defaultAuthFilePaths, findCredentials, loadAuthFiles, parseAuthFile } from './credentials.ts';
export type { AuthFile, Credentials } from './credentials.ts';
export { credentialsFromPullSecret, parsePullSecret } from './pull-secret.ts';
export type { PullSecret, PullSecretKind } from './pull-secret.ts';
export { formatPlatform, hostPlatform, normalizePlatform, platformScore } from './platform.ts';
export type { PlatformSpec } from './platform.ts';
export { compressionOf, diskFormatOf, disktypeRank, isArtifactManifest, safeFileName } from './select.ts';
export type { Compression, DownloadSource } from './select.ts';
export {
  findRegistryConfig, loadRegistriesConf, parseRegistriesConf, pullSources,
  DEFAULT_REGISTRIES_CONF, DEFAULT_REGISTRIES_CONF_DIR,
} from './registries-conf.ts';
export type { PullSource, RegistriesConfig, RegistryConfig } from './registries-conf.ts';
export { checkPolicy, loadPolicy, parsePolicy, DEFAULT_POLICY_PATH } from './policy.ts';
export type { Policy, PolicyPlan } from './policy.ts';
export type { SignatureVerification } from './signatures/index.ts';
export { DEFAULT_CERTS_DIRS } from './dispatcher.ts';
export { parseManifestDocument } from './manifest-parse.ts';
export type { ManifestDocument } from './manifest-parse.ts';
export { MANIFEST_ACCEPT, MEDIA_TYPES } from './schemas.ts';
export type { Descriptor, ImageIndex, ImageManifest, Platform } from './schemas.ts';

export { bufferBlob, fileBlob, openRepositoryPusher, pinnedUrl } from './push.ts';
export type { PushedDescriptor, PushOptions, RepositoryPusher } from './push.ts';
export { DEFAULT_CHUNK_SIZE } from './upload.ts';
export type { BlobInput, UploadOptions, UploadOutcome } from './upload.ts';
export {
  artifactIndex, artifactManifest, checkTitles, createdFromEpoch, titleProblem,
  CREATED_ANNOTATION, EMPTY_CONFIG, EMPTY_CONFIG_BYTES, TITLE_ANNOTATION,
} from './artifact.ts';
export type { ArtifactFile, ArtifactManifestInput, IndexEntry } from './artifact.ts';
export { selectArtifact } from './artifact-select.ts';
export type { ArtifactFileEntry, SelectArtifactOptions, SelectedArtifact } from './artifact-select.ts';

/** Build a client; configuration files are read lazily on first use. */
export function createOciClient(options: OciClientOptions = {}): OciClient {
  return new OciClient(options);
}
