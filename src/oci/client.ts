/**
 * The OCI client: composes registries.conf, policy.json, certs.d, auth files and per-call
 * credentials into sessions; resolves references (mirrors first, the primary last) and pins the
 * whole pull to one digest.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { AgentError, isAgentError } from '../errors.ts';
import { createSilentLogger, type Logger } from '../log/index.ts';
import { findCredentialsInFiles, loadAuthFiles, defaultAuthFilePaths, type AuthFile, type Credentials } from './credentials.ts';
import { createDispatcher, DEFAULT_CERTS_DIRS, loadHostTls } from './dispatcher.ts';
import { cancelled, type HttpContext } from './http.ts';
import type { ManifestDocument } from './manifest-parse.ts';
import { fetchManifest, resolveTag } from './manifest-fetch.ts';
import { checkPolicy, DEFAULT_POLICY_PATH, loadPolicy, type Policy, type PolicyPlan } from './policy.ts';
import { apiHost, formatName, formatReference, parseReference, withDigest, type ImageReference } from './reference.ts';
import { withOverlay } from './mirrors.ts';
import {
  DEFAULT_REGISTRIES_CONF, DEFAULT_REGISTRIES_CONF_DIR, isInsecureRegistry, loadRegistriesConf, pullSources,
  type PullSource, type RegistriesConfig,
} from './registries-conf.ts';
import { DEFAULT_RETRY_POLICY, sleep, type RetryPolicy } from './retry.ts';
import { RegistrySession } from './session.ts';
import { openBlobChunks, openBlobStream, type BlobOptions } from './blob.ts';
import { inspectImage, type ImageInspection, type InspectOptions } from './inspect.ts';
import type { CallOptions, ImageResolver, ResolvedImage } from './resolver.ts';
import type { SignatureVerification } from './signatures/index.ts';
import { Descriptor } from './schemas.ts';

export interface OciClientOptions {
  log?: Logger;
  /** Parsed registries.conf; when absent it is loaded from `registriesConfPath` + `registriesConfDir`. */
  registries?: RegistriesConfig;
  registriesConfPath?: string;
  registriesConfDir?: string;
  /** Parsed policy.json; `null` disables the policy check (tests only). */
  policy?: Policy | null;
  policyPath?: string;
  certsDirs?: readonly string[];
  /** auth.json/config.json files searched for credentials (default: podman's list). */
  authFilePaths?: readonly string[];
  retry?: Partial<RetryPolicy>;
  timeouts?: { connectMs?: number; headersMs?: number; bodyIdleMs?: number };
  /** Environment for proxy variables (default: process.env). */
  env?: NodeJS.ProcessEnv;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
  random?: () => number;
}

/** Anything that says where an image's blobs live: a ResolvedImage or an ImageInspection. */
export interface BlobSource {
  reference: ImageReference;
  source: PullSource;
}

export class OciClient implements ImageResolver {
  readonly log: Logger;
  readonly http: HttpContext;
  readonly #options: OciClientOptions;
  #config: Promise<{ registries: RegistriesConfig; policy: Policy | undefined; authFiles: AuthFile[] }> | undefined;
  #dispatchers = new Map<string, Promise<Dispatcher>>();
  #sessions = new Map<string, RegistrySession>();
  /** Hosts a pull source marks insecure (a mirror may be insecure without a [[registry]] of its own). */
  #insecureHosts = new Set<string>();

  constructor(options: OciClientOptions = {}) {
    this.#options = options;
    this.log = (options.log ?? createSilentLogger()).child({ component: 'oci' });
    this.http = {
      dispatcherFor: (url) => this.#dispatcherFor(url),
      retry: { ...DEFAULT_RETRY_POLICY, ...options.retry },
      sleep: options.sleep ?? sleep,
      now: options.now ?? Date.now,
      random: options.random ?? Math.random,
      log: this.log,
    };
  }

  #loadConfig(): Promise<{ registries: RegistriesConfig; policy: Policy | undefined; authFiles: AuthFile[] }> {
    this.#config ??= (async () => {
      const o = this.#options;
      const registries = o.registries ?? await loadRegistriesConf(o.registriesConfPath ?? DEFAULT_REGISTRIES_CONF, o.registriesConfDir ?? DEFAULT_REGISTRIES_CONF_DIR);
      let policy: Policy | undefined;
      if (o.policy !== undefined) policy = o.policy ?? undefined;
      else {
        policy = await loadPolicy(o.policyPath ?? DEFAULT_POLICY_PATH);
        if (!policy) this.log.warn({ path: o.policyPath ?? DEFAULT_POLICY_PATH }, 'no policy.json; accepting images without a signature policy');
      }
      const authFiles = await loadAuthFiles(o.authFilePaths ?? defaultAuthFilePaths(o.env));
      return { registries, policy, authFiles };
    })().catch((err: unknown) => {
      this.#config = undefined;
      throw err;
    });
    return this.#config;
  }

  async #dispatcherFor(url: URL): Promise<Dispatcher> {
    const key = url.host;
    let pending = this.#dispatchers.get(key);
    if (!pending) {
      pending = (async () => {
        const { registries } = await this.#loadConfig();
        const tls = await loadHostTls(this.#options.certsDirs ?? DEFAULT_CERTS_DIRS, url.host);
        const t = this.#options.timeouts ?? {};
        return createDispatcher({
          tls,
          insecure: this.#insecureHosts.has(url.host) || isInsecureRegistry(registries, url.host),
          connectTimeoutMs: t.connectMs ?? 30_000,
          headersTimeoutMs: t.headersMs ?? 60_000,
          bodyTimeoutMs: t.bodyIdleMs ?? 120_000,
          ...(this.#options.env ? { env: this.#options.env } : {}),
        });
      })();
      pending.catch(() => this.#dispatchers.delete(key));
      this.#dispatchers.set(key, pending);
    }
    return pending;
  }

  /** The session for a source; credentials: explicit ones for the logical registry, else the auth files. */
  async session(source: PullSource, logical: ImageReference, explicit: Credentials | undefined): Promise<{ session: RegistrySession; credentials: Credentials | undefined }> {
    const { authFiles } = await this.#loadConfig();
    const credentials = explicit && source.registry === logical.registry ? explicit
      : findCredentialsInFiles(authFiles, source.registry, source.repository);
    const credKey = credentials ? createHash('sha256').update(JSON.stringify(credentials)).digest('hex') : '';
    const key = JSON.stringify([source.registry, source.repository, source.insecure, credKey]);
    let session = this.#sessions.get(key);
    if (!session) {
      if (source.insecure) this.#insecureHosts.add(apiHost(source.registry));
      session = new RegistrySession({ registry: source.registry, repository: source.repository, insecure: source.insecure, credentials, http: this.http });
      this.#sessions.set(key, session);
    }
    return { session, credentials };
  }

  /** registries.conf and its drop-ins as this client reads them (a command's overlay not included). */
  async registries(): Promise<RegistriesConfig> {
    return (await this.#loadConfig()).registries;
  }

  /** Resolve a reference to one digest on the first source that has it. */
  async resolve(input: string | ImageReference, options: CallOptions = {}): Promise<ResolvedImage> {
    // Objects are re-validated too: their tag/digest become URL path segments.
    const ref = parseReference(typeof input === 'string' ? input : formatReference(input));
    const { registries, policy } = await this.#loadConfig();
    const plan = policy ? checkPolicy(policy, ref) : undefined;
    const sources = pullSources(withOverlay(registries, options.registries), ref);
    const mirrorErrors: Record<string, string>[] = [];
    for (const source of sources) {
      try {
        const { session, credentials } = await this.session(source, ref, options.credentials);
        let document: ManifestDocument;
        if (ref.digest) document = await fetchManifest(session, ref.digest, { signal: options.signal });
        else {
          const tagged = await resolveTag(session, ref.tag ?? 'latest', options.signal);
          document = tagged.document ?? await fetchManifest(session, tagged.digest, { signal: options.signal });
        }
        const signatures = await this.#verifySignatures(plan, session, ref, document.digest, options.signal);
        return { reference: withDigest(ref, document.digest), source, document, credentials, ...(signatures ? { signatures } : {}) };
      } catch (err) {
        if (!source.mirror || (isAgentError(err) && err.code === 'CANCELLED')) {
          if (mirrorErrors.length && isAgentError(err)) err.details['mirror_errors'] = mirrorErrors;
          throw err;
        }
        const e = isAgentError(err) ? err : new AgentError('INTERNAL', String(err), { cause: err });
        this.log.warn({ mirror: source.registry, reference: formatName(ref), err: e }, 'mirror failed; trying the next source');
        mirrorErrors.push({ mirror: source.registry, code: e.code, message: e.message });
      }
    }
    throw new AgentError('INTERNAL', 'no pull source');
  }

  // Signature verification (and the sigstore libraries) is loaded only when the policy asks for it.
  async #verifySignatures(plan: PolicyPlan | undefined, session: RegistrySession, ref: ImageReference, digest: string, signal: AbortSignal | undefined): Promise<SignatureVerification[] | undefined> {
    if (!plan?.signatures.length) return undefined;
    const { verifySignatures } = await import('./signatures/index.ts');
    const verified = await verifySignatures(plan.signatures, { session, reference: ref, digest, signal });
    for (const v of verified) {
      this.log.info({ reference: formatName(ref), digest, scope: v.scope, key: v.keyFingerprint, found_in: v.foundIn, format: v.format }, 'signature verified');
    }
    return verified;
  }

  /** Resolve, select for this platform and describe an image or artifact (no layer download). */
  inspectImage(input: string | ImageReference, options: InspectOptions = {}): Promise<ImageInspection> {
    return inspectImage(this, input, options);
  }

  /** A verified byte stream of one blob of a resolved/inspected image (errors before ending on mismatch). */
  async openBlob(image: BlobSource, descriptor: Descriptor, options: CallOptions & BlobOptions = {}): Promise<Readable> {
    const { sessions, blob, blobOptions } = await this.#blobSessions(image, descriptor, options);
    return openBlobStream(sessions, blob, blobOptions);
  }

  /**
   * The same verified bytes as `openBlob`, as an async iterator (no stream layer: cheaper per
   * chunk for consumers that iterate, such as the image writer). Ending the iteration early, or
   * aborting `options.signal`, cancels the download.
   */
  async openBlobChunks(image: BlobSource, descriptor: Descriptor, options: CallOptions & BlobOptions = {}): Promise<AsyncGenerator<Buffer>> {
    const { sessions, blob, blobOptions } = await this.#blobSessions(image, descriptor, options);
    return openBlobChunks(sessions, blob, blobOptions);
  }

  /**
   * The source the image was resolved on, then the sources registries.conf lists after it for the
   * pinned reference: a mirror that dies mid-blob hands the rest to the next one (src/oci/blob.ts).
   */
  async #blobSessions(image: BlobSource, descriptor: Descriptor, options: CallOptions & BlobOptions) {
    const parsed = Descriptor.safeParse(descriptor);
    if (!parsed.success) throw new AgentError('OCI_MANIFEST_INVALID', 'Invalid blob descriptor (digest, size or media type)');
    const sources = await this.blobSources(image, options.registries);
    const sessions = await Promise.all(sources.map(async (s) => (await this.session(s, image.reference, options.credentials)).session));
    const onSource = (index: number, err: unknown): void => {
      const from = sources[index - 1];
      this.log.warn({ blob: parsed.data.digest, from: from?.registry, to: sources[index]?.registry, err }, 'blob source failed; continuing on the next source');
      options.onSource?.(index, err);
    };
    return { sessions, blob: parsed.data, blobOptions: { ...options, onSource } };
  }

  /** The sources a blob of `image` is downloaded from, in order (what `onSource`'s index points into). */
  async blobSources(image: BlobSource, overlay?: RegistriesConfig): Promise<PullSource[]> {
    const { registries } = await this.#loadConfig();
    let all: PullSource[];
    try {
      all = pullSources(withOverlay(registries, overlay), image.reference);
    } catch {
      return [image.source];
    }
    const at = all.findIndex((s) => s.registry === image.source.registry && s.repository === image.source.repository);
    return at < 0 ? [image.source] : [image.source, ...all.slice(at + 1)];
  }

  /** Stream one blob into `destination`; resolves only after size and digest were verified. */
  async downloadBlob(image: BlobSource, descriptor: Descriptor, destination: Writable, options: CallOptions & BlobOptions = {}): Promise<void> {
    const stream = await this.openBlob(image, descriptor, options);
    try {
      await pipeline(stream, destination, options.signal ? { signal: options.signal } : {});
    } catch (err) {
      throw cancelled(options.signal, err) ?? err;
    }
  }

  async close(): Promise<void> {
    const dispatchers = [...this.#dispatchers.values()];
    this.#dispatchers.clear();
    this.#sessions.clear();
    await Promise.all(dispatchers.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}
