/**
 * What inspection needs from the client: resolving a reference and opening the session for
 * where it resolved. Declared apart so that inspect.ts depends on this contract, and the client,
 * which implements it, is the only one that imports inspect.ts.
 * @module
 */
import type { Logger } from '../log/index.ts';
import type { Credentials } from './credentials.ts';
import type { ManifestDocument } from './manifest-parse.ts';
import type { ImageReference } from './reference.ts';
import type { PullSource, RegistriesConfig } from './registries-conf.ts';
import type { RegistrySession } from './session.ts';
import type { SignatureVerification } from './signatures/index.ts';

export interface CallOptions {
  signal?: AbortSignal | undefined;
  /** Credentials for the image's own registry (e.g. from the pull secret); never sent to mirrors on other hosts. */
  credentials?: Credentials | undefined;
  /** registries.conf entries for this call only (a node's mirrors), applied over the client's like a later drop-in. */
  registries?: RegistriesConfig | undefined;
}

/** A reference resolved on one source and pinned to the digest of its top-level document. */
export interface ResolvedImage {
  /** The logical reference, pinned (`digest` set). */
  reference: ImageReference;
  /** Where the content is served from (a mirror or the primary location). */
  source: PullSource;
  document: ManifestDocument;
  /** Credentials used for this source (kept for later blob requests). */
  credentials?: Credentials | undefined;
  /** The signatures policy.json required and that were verified for `reference.digest`; absent when none was required. */
  signatures?: SignatureVerification[];
}

export interface ImageResolver {
  readonly log: Logger;
  /** Resolve a reference to one digest on the first source that has it. */
  resolve(input: string | ImageReference, options?: CallOptions): Promise<ResolvedImage>;
  /** The session for a source; credentials: explicit ones for the logical registry, else the auth files. */
  session(source: PullSource, logical: ImageReference, explicit: Credentials | undefined): Promise<{ session: RegistrySession; credentials: Credentials | undefined }>;
}
