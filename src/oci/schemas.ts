/**
 * zod schemas for the image-spec documents we read. Lenient on fields we do not use
 * (registries and tools add their own), strict on the ones we rely on.
 * @module
 */
import { z } from 'zod';
import { tryParseDigest } from './digest.ts';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  empty: 'application/vnd.oci.empty.v1+json',
} as const;

/** All four manifest types, always sent together (the reference registry misbehaves otherwise). */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest,
].join(', ');

export const INDEX_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList]);
export const MANIFEST_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
export const SCHEMA1_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.dockerSchema1, MEDIA_TYPES.dockerSchema1Signed]);

// image-spec media type grammar (RFC 6838 type/subtype).
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

export const Digest = z.string().refine((v) => tryParseDigest(v) !== undefined, {
  message: 'malformed or unsupported digest (sha256/sha512, lower-case hex)',
});

export const Platform = z.object({
  architecture: z.string().min(1),
  os: z.string().min(1),
  variant: z.string().optional(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
});
export type Platform = z.infer<typeof Platform>;

const Annotations = z.record(z.string(), z.string());

export const Descriptor = z.object({
  mediaType: z.string().regex(MEDIA_TYPE),
  digest: Digest,
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  urls: z.array(z.string()).optional(),
  annotations: Annotations.optional(),
  data: z.string().optional(),
  artifactType: z.string().regex(MEDIA_TYPE).optional(),
  platform: Platform.optional(),
});
export type Descriptor = z.infer<typeof Descriptor>;

// An image manifest and an image index share their fields but the ones that make each what it
// is; those stay in the middle, where the image-spec lists them.
function topLevelDocument<Content extends z.ZodRawShape>(content: Content) {
  return z.object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    artifactType: z.string().regex(MEDIA_TYPE).optional(),
    ...content,
    subject: Descriptor.optional(),
    annotations: Annotations.optional(),
  });
}

export const ImageManifest = topLevelDocument({ config: Descriptor, layers: z.array(Descriptor) });
export type ImageManifest = z.infer<typeof ImageManifest>;

export const ImageIndex = topLevelDocument({ manifests: z.array(Descriptor) });
export type ImageIndex = z.infer<typeof ImageIndex>;

/** The parts of an image config we use (platform and labels); everything else is ignored. */
export const ImageConfig = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  config: z.object({ Labels: z.record(z.string(), z.string()).nullish() }).nullish(),
});
export type ImageConfig = z.infer<typeof ImageConfig>;

export const TokenResponse = z.object({
  token: z.string().optional(),
  access_token: z.string().optional(),
  expires_in: z.number().optional(),
  issued_at: z.string().optional(),
});
