/**
 * Image references: `oci://host[:port]/name[:tag][@alg:hex]`, `docker://…` and plain
 * `host/name…`, parsed with the distribution-spec grammar.
 * @module
 */
import { AgentError } from '../errors.ts';
import { parseDigest } from './digest.ts';

export interface ImageReference {
  /** `host[:port]`, lower case; Docker Hub aliases are normalised to `docker.io`. */
  registry: string;
  /** Repository path, e.g. `library/busybox`. */
  repository: string;
  /** The tag (default `latest` when there is no digest); kept for display when a digest is present. */
  tag: string | undefined;
  /** `sha256:…` / `sha512:…`; when present it wins over the tag. */
  digest: string | undefined;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME_LENGTH = 255;

export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

function invalid(input: string, why: string): AgentError {
  return new AgentError('OCI_REFERENCE_INVALID', `Invalid image reference "${input.slice(0, 300)}": ${why}`, {
    details: { reference: input.slice(0, 300) },
  });
}

export function isDockerHub(host: string): boolean {
  return DOCKER_HUB_ALIASES.has(host.toLowerCase());
}

/**
 * Parse an image reference. `oci://` and `docker://` URLs always start with the registry host;
 * plain references use Docker's rule (first component is a host if it has `.`/`:` or is `localhost`).
 */
export function parseReference(input: string): ImageReference {
  let rest = input.trim();
  const scheme = /^(oci|docker):\/\//i.exec(rest);
  if (scheme) rest = rest.slice(scheme[0].length);
  const explicitHost = scheme?.[1]?.toLowerCase() === 'oci';
  if (rest === '') throw invalid(input, 'empty');

  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const digestPart = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      digest = `${parseDigest(digestPart).algorithm}:${parseDigest(digestPart).encoded}`;
    } catch (err) {
      throw invalid(input, `bad digest (${(err as Error).message})`);
    }
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  if (colon >= 0 && lastSlash >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    // Ironic's docs write `repo:@sha256:…`; an empty tag is only tolerated before a digest.
    if (tag === '' && digest) tag = undefined;
    else if (!TAG.test(tag)) throw invalid(input, `bad tag "${tag.slice(0, 140)}"`);
  } else if (colon >= 0 && !explicitHost) {
    // `name:tag` without any slash: Docker Hub short name.
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(input, `bad tag "${tag.slice(0, 140)}"`);
  }

  const parts = rest.split('/');
  const first = parts[0] ?? '';
  const looksLikeHost = first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase();
  let registry: string;
  let path: string[];
  if (parts.length > 1 && (explicitHost || looksLikeHost)) {
    registry = first.toLowerCase();
    path = parts.slice(1);
  } else if (explicitHost) {
    throw invalid(input, 'an oci:// reference needs a registry host and a repository name');
  } else {
    registry = DOCKER_HUB;
    path = parts;
  }
  if (!HOST.test(registry)) throw invalid(input, `bad registry host "${registry.slice(0, 140)}"`);
  if (isDockerHub(registry)) {
    registry = DOCKER_HUB;
    if (path.length === 1) path = ['library', ...path];
  }
  for (const component of path) {
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(input, `bad repository component "${component.slice(0, 140)}" (lower case letters, digits and . _ __ - only)`);
    }
  }
  const repository = path.join('/');
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) throw invalid(input, 'name longer than 255 characters');
  if (!digest && tag === undefined) tag = 'latest';
  return { registry, repository, tag, digest };
}

/** What to ask the registry for: the digest when there is one, else the tag. */
export function referenceTarget(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** The host the HTTP API lives on (`docker.io` is served by `registry-1.docker.io`). */
export function apiHost(registry: string): string {
  return isDockerHub(registry) ? 'registry-1.docker.io' : registry;
}

/** `host/name@digest` or `host/name:tag`: what registries.conf and policy.json match against. */
export function formatName(ref: ImageReference): string {
  const name = `${ref.registry}/${ref.repository}`;
  return ref.digest ? `${name}@${ref.digest}` : `${name}:${ref.tag ?? 'latest'}`;
}

/**
 * The reference podman understands. `oci:` is podman's local OCI layout transport, so an
 * `oci://` URL must never reach it; a docker reference with both tag and digest is refused by
 * containers/image, so the digest alone is given when known.
 */
export function toPodmanReference(ref: ImageReference): string {
  return formatName(ref);
}

/** The `oci://` URL of a reference (tag and digest both kept when present). */
export function formatReference(ref: ImageReference): string {
  const tag = ref.tag !== undefined ? `:${ref.tag}` : '';
  const digest = ref.digest ? `@${ref.digest}` : '';
  return `oci://${ref.registry}/${ref.repository}${tag}${digest}`;
}

/** The same reference pinned to one digest (the tag stays for display). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  parseDigest(digest);
  return { ...ref, digest };
}
