/**
 * `signedIdentity` of containers-policy.json(5): does the image a signature names (its
 * `docker-reference`) fit the reference being deployed? Names are compared after Docker's
 * normalisation (`busybox` → `docker.io/library/busybox`).
 * @module
 */
import { parseReference } from '../reference.ts';
import type { SignedIdentity } from './requirement.ts';

/** A docker reference as policy matching sees it: the name, and a tag or digest only when written. */
export interface DockerIdentity {
  name: string;
  tag?: string | undefined;
  digest?: string | undefined;
}

/** Parse `host/repo[:tag][@digest]`; undefined when it is no valid reference. */
export function parseIdentity(text: string): DockerIdentity | undefined {
  let ref;
  try {
    ref = parseReference(text);
  } catch {
    return undefined;
  }
  const withoutDigest = text.split('@')[0] ?? '';
  const last = withoutDigest.slice(withoutDigest.lastIndexOf('/') + 1);
  const tagWritten = withoutDigest.includes('/') && last.includes(':') || !withoutDigest.includes('/') && withoutDigest.includes(':');
  return { name: `${ref.registry}/${ref.repository}`, tag: tagWritten ? ref.tag : undefined, digest: ref.digest };
}

export function formatIdentity(id: DockerIdentity): string {
  return id.digest ? `${id.name}@${id.digest}` : id.tag !== undefined ? `${id.name}:${id.tag}` : id.name;
}

// containers/image compares the reference's string form: a digest wins over a tag.
function sameReference(a: DockerIdentity, b: DockerIdentity): boolean {
  return a.name === b.name && (a.digest ?? '') === (b.digest ?? '') && (a.digest ? true : (a.tag ?? '') === (b.tag ?? ''));
}

function hasTagOrDigest(id: DockerIdentity): boolean {
  return id.digest !== undefined || id.tag !== undefined;
}

function repoDigestOrExact(image: DockerIdentity, signed: DockerIdentity): boolean {
  if (image.digest) return signed.name === image.name;
  return image.tag !== undefined && sameReference(image, signed);
}

// remapIdentity's prefix is a host, a host/namespace or a full repository, matched at a '/' boundary.
function remap(image: DockerIdentity, prefix: string, signedPrefix: string): DockerIdentity | undefined {
  if (image.name !== prefix && !image.name.startsWith(`${prefix}/`)) return undefined;
  const remapped = parseIdentity(`${signedPrefix}${image.name.slice(prefix.length)}`);
  return remapped ? { ...remapped, tag: image.tag, digest: image.digest } : undefined;
}

/**
 * Whether a signature naming `signed` satisfies `rule` for `image` (the reference as given:
 * with a digest only when the user wrote one).
 */
export function identityMatches(rule: SignedIdentity, image: DockerIdentity, signed: DockerIdentity): boolean {
  switch (rule.type) {
    case 'matchExact':
      return hasTagOrDigest(image) && sameReference(image, signed);
    case 'matchRepoDigestOrExact':
      return repoDigestOrExact(image, signed);
    case 'matchRepository':
      return image.name === signed.name;
    case 'exactReference': {
      const wanted = parseIdentity(rule.dockerReference);
      return wanted !== undefined && hasTagOrDigest(wanted) && sameReference(wanted, signed);
    }
    case 'exactRepository':
      return parseIdentity(rule.dockerRepository)?.name === signed.name;
    case 'remapIdentity': {
      const remapped = remap(image, rule.prefix, rule.signedPrefix);
      return repoDigestOrExact(remapped ?? image, signed);
    }
  }
}

/** The rule in words, for errors and results. */
export function describeIdentity(rule: SignedIdentity): string {
  switch (rule.type) {
    case 'exactReference': return `exactReference ${rule.dockerReference}`;
    case 'exactRepository': return `exactRepository ${rule.dockerRepository}`;
    case 'remapIdentity': return `remapIdentity ${rule.prefix} → ${rule.signedPrefix}`;
    default: return rule.type;
  }
}
