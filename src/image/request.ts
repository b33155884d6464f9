/**
 * `image_info` as Ironic's `direct` deploy interface sends it to `write_image` /
 * `standby.prepare_image` (IR `agent.py` `AgentDeploy.write_image`, IPA `standby.py`
 * `_validate_image_info`), reduced to what a whole-disk write needs. Unsupported shapes fail
 * here with a code, before any disk is chosen.
 * @module
 */
import { z } from 'zod';
import { parseNodeRegistryMirrors, type RegistryMirror } from '../config/index.ts';
import { registryAuth, type RegistryAuth } from '../deploy/pull-secret.ts';
import { AgentError } from '../errors.ts';
import { parseReference, type DownloadSource } from '../oci/index.ts';
import { checksumFromImageInfo, type ExpectedChecksum } from './checksum.ts';
import type { DiskFormat } from './write.ts';

export const ImageInfo = z.looseObject({
  id: z.string().nullish(),
  urls: z.unknown(),
  checksum: z.unknown().optional(),
  os_hash_algo: z.unknown().optional(),
  os_hash_value: z.unknown().optional(),
  disk_format: z.string().nullish(),
  container_format: z.string().nullish(),
  image_type: z.string().nullish(),
  stream_raw_images: z.boolean().nullish(),
  image_download_source: z.string().nullish(),
  image_request_authorization: z.string().nullish(),
  /** Ours: registry credentials for `oci://` URLs (the shapes src/oci `parsePullSecret` accepts). */
  oci_pull_secret: z.string().nullish(),
  /** Ours: this node's registry mirrors for `oci://` URLs (src/config/registry-mirrors.ts). */
  image_registry_mirrors: z.unknown().optional(),
  configdrive: z.unknown().optional(),
});
export type ImageInfo = z.infer<typeof ImageInfo>;

export interface WriteImageRequest {
  id: string;
  urls: string[];
  checksum?: ExpectedChecksum | undefined;
  diskFormat?: DiskFormat | undefined;
  downloadSource: DownloadSource;
  /** Decoded `Authorization` header value for http(s) URLs (a secret: never logged). */
  authorization?: string | undefined;
  /** From `oci_pull_secret`, parsed for the registry of the first `oci://` URL. */
  ociAuth?: RegistryAuth | undefined;
  configdrive?: string | undefined;
  /** `stream_raw_images: false` asks IPA to cache first; this agent streams anyway. */
  streamRequested: boolean;
  /** `image_registry_mirrors` of image_info, else of the node's instance_info: mirrors for `oci://` URLs. */
  registryMirrors: RegistryMirror[];
}

function invalid(message: string, details: Record<string, unknown> = {}): AgentError {
  return new AgentError('DEPLOY_ARGS_INVALID', message, { details });
}

function unsupported(message: string, details: Record<string, unknown>): AgentError {
  return new AgentError('IMAGE_FORMAT_UNSUPPORTED', message, { details });
}

// base64 of a whole header value ("Bearer …" / "Basic …"), as IPA `_load_supplied_authorization` reads it.
function decodeAuthorization(value: string): string {
  const text = value.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) throw invalid("Image 'image_request_authorization' is not base64");
  const decoded = Buffer.from(text, 'base64').toString('utf8').trim();
  if (!decoded || /[\r\n\0]/.test(decoded)) throw invalid("Image 'image_request_authorization' does not decode to a header value");
  return decoded;
}

// A secret without an oci:// URL to use it for is not parsed, only masked.
function ociAuth(pullSecret: string, urls: readonly string[]): RegistryAuth {
  const ociUrl = urls.find((u) => /^oci:\/\//i.test(u));
  return ociUrl ? registryAuth(pullSecret, parseReference(ociUrl)) : { secrets: [pullSecret] };
}

/**
 * Validates `image_info` (+ the step's `configdrive`); `allowMd5` is IPA's `md5_enabled`. The
 * node's `instance_info` is read for `image_registry_mirrors` when image_info has none (Ironic
 * copies only its own keys into image_info).
 */
export function parseWriteImageRequest(rawInfo: unknown, configdrive: unknown, allowMd5: boolean, instanceInfo?: Record<string, unknown> | null): WriteImageRequest {
  const parsed = ImageInfo.safeParse(rawInfo);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`Invalid image_info: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'not an object'}`);
  }
  const info = parsed.data;
  if (!Array.isArray(info.urls) || info.urls.length === 0 || !info.urls.every((u) => typeof u === 'string' && u.length > 0)) {
    throw invalid("Image 'urls' must be a list with at least one element.");
  }
  const urls = info.urls as string[];
  if (info.image_type === 'partition') {
    throw unsupported('Partition images are not supported by this agent; use a whole-disk image', { image_type: info.image_type });
  }
  const format = info.disk_format ?? undefined;
  let diskFormat: DiskFormat | undefined;
  if (format === 'raw' || format === 'qcow2') diskFormat = format;
  else if (format !== undefined && format !== 'unknown') {
    throw unsupported(`Disk format "${format}" is not supported; only raw and qcow2 whole-disk images are`, { disk_format: format });
  }
  const source = info.image_download_source ?? 'http';
  if (source === 'swift') throw unsupported('image_download_source "swift" is not supported (the conductor should hand out http(s) URLs)', { image_download_source: source });
  const checksum = checksumFromImageInfo(info, allowMd5);
  // OCI blobs are verified against their digest; plain URLs need a checksum (IPA _validate_image_info).
  if (!checksum && urls.some((u) => !/^oci:\/\//i.test(u))) {
    throw new AgentError('IMAGE_CHECKSUM_UNSUPPORTED', "Image checksum is not available, either the 'checksum' field or the 'os_hash_algo' and 'os_hash_value' fields must be present.");
  }
  const cd = configdrive ?? info.configdrive;
  if (cd !== undefined && cd !== null && typeof cd !== 'string') throw invalid('configdrive must be a string (gzip+base64 ISO, or a URL)');
  return {
    id: info.id ?? 'image',
    urls,
    ...(checksum ? { checksum } : {}),
    ...(diskFormat ? { diskFormat } : {}),
    downloadSource: source === 'local' ? 'local' : 'http',
    ...(info.image_request_authorization ? { authorization: decodeAuthorization(info.image_request_authorization) } : {}),
    ...(info.oci_pull_secret ? { ociAuth: ociAuth(info.oci_pull_secret, urls) } : {}),
    ...(typeof cd === 'string' && cd ? { configdrive: cd } : {}),
    streamRequested: info.stream_raw_images !== false,
    registryMirrors: parseNodeRegistryMirrors(info.image_registry_mirrors ?? instanceInfo?.['image_registry_mirrors'], 'image_registry_mirrors'),
  };
}
