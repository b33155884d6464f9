/**
 * `bootc-agent fetch SOURCE --output FILE|DEVICE`: the write_image pipeline from a shell —
 * an `oci://` disk artifact or an `https://` URL, verified, decompressed and written to a file
 * or a block device; `--output-dir DIR` writes every file of an `oci://` artifact under its
 * title instead (fetch-dir.ts). Secrets never go in argv: credentials come from an auth file or from an
 * environment variable whose *name* is given.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AgentError, describeError, isAgentError, toAgentError, type ErrorCode } from '../errors.ts';
import { createExecaRunner, type CommandRunner } from '../exec/index.ts';
import { createLogger, createSilentLogger, type Logger } from '../log/index.ts';
import {
  createOciClient, credentialsFromPullSecret, DEFAULT_REGISTRIES_CONF, DEFAULT_REGISTRIES_CONF_DIR, defaultAuthFilePaths,
  loadRegistriesConf, parsePullSecret, parseReference, type Credentials, type OciClient, type OciClientOptions, type RegistriesConfig,
} from '../oci/index.ts';
import { parseChecksumString, writeArtifactToTarget, type WriteArtifactResult, type WriteProgress } from '../image/index.ts';
import { fetchArtifactToDir, type DirFetchResult } from './fetch-dir.ts';
import { isMounted } from './mounts.ts';

export const FETCH_HELP = `Usage: bootc-agent fetch SOURCE --output FILE|DEVICE [options]
       bootc-agent fetch oci://… --output-dir DIR [options]

Download a disk image and write it to a file or a block device: the same pipeline as the
write_image deploy step (checksum/digest verified while streaming, gzip/zstd decompressed on
the fly, qcow2 converted to raw with qemu-img, fsync, partition table re-read).

SOURCE
  oci://HOST[:PORT]/REPO[:TAG|@DIGEST]   a one-file OCI artifact (platform and disktype chosen
                                         like Ironic does; raw preferred over qcow2)
  https://…  http://…                    a plain download

With --output-dir, every file of the oci:// artifact chosen for --platform (for example the
kernel and initramfs of a ramdisk tag published by scripts/publish-ramdisk) is written into DIR
under its org.opencontainers.image.title, each verified by size and digest before it is renamed
into place; titles with a path, "..", a leading dot or control characters are refused, and so is
an artifact with two files of the same title.

Options
  -o, --output PATH       file (created or truncated) or block device (written in place)
  -d, --output-dir DIR    oci:// only: write the artifact's files into DIR (created if missing)
      --platform OS/ARCH[/VARIANT]  wanted platform for oci:// (default: this host, linux)
      --checksum ALGO:HEX expected checksum of the downloaded bytes (sha256:…, sha512:…)
      --insecure          do not verify TLS certificates (oci:// registry or https:// server)
      --authfile PATH     registry credentials file (containers auth.json / docker config.json);
                          default: podman's auth file locations
      --creds-env VAR     read credentials from environment variable VAR: for oci:// any pull
                          secret shape ("user:pass", base64 auth, docker config JSON, token);
                          for https:// "user:pass" (Basic) or a bearer token
      --cert-dir DIR      certs.d-style directory (DIR/HOST:PORT/ca.crt) for oci:// registries
      --ca-file PEM       extra CA certificates for https:// sources
      --temp-dir DIR      where a qcow2 image's temporary copy is kept (default: $TMPDIR or /tmp)
      --json              print the result as JSON on stdout
      --progress-interval SECONDS  seconds between progress lines when stderr is not a TTY (default 5)
      --debug             debug log lines on stderr
  -h, --help              this help

Progress goes to stderr: one updating line on a terminal, plain lines otherwise.
The result (bytes, digest, seconds, where the time went) goes to stdout.

Exit codes
  0  written and verified
  1  unexpected internal error
  2  bad usage (unknown option, missing --output, malformed reference or checksum)
  3  download failed (network, TLS, registry, authentication, not found, no matching platform)
  4  verification failed (checksum or digest mismatch; a signature policy.json requires is missing,
     invalid, for another digest or for another identity); a written device is wiped, a file deleted
  5  write failed (target too small, no temporary space for qcow2, I/O error, device mounted)
  6  unsupported image (xz, a format other than raw/qcow2, unknown checksum algorithm; with
     --output-dir an unsafe or repeated file title)
  130 interrupted (SIGINT/SIGTERM); a partially written device is wiped, a file deleted
`;

export const EXIT = { ok: 0, internal: 1, usage: 2, download: 3, verify: 4, write: 5, unsupported: 6, interrupted: 130 } as const;

const EXIT_BY_CODE: Partial<Record<ErrorCode, number>> = {
  DEPLOY_ARGS_INVALID: EXIT.usage,
  OCI_REFERENCE_INVALID: EXIT.usage,
  OCI_PULL_SECRET_INVALID: EXIT.usage,
  REGISTRY_CONFIG_INVALID: EXIT.usage,
  IMAGE_DOWNLOAD_FAILED: EXIT.download,
  REGISTRY_BLOCKED: EXIT.download,
  REGISTRY_UNREACHABLE: EXIT.download,
  REGISTRY_UNAVAILABLE: EXIT.download,
  REGISTRY_AUTH_FAILED: EXIT.download,
  REGISTRY_NOT_FOUND: EXIT.download,
  REGISTRY_PROTOCOL: EXIT.download,
  OCI_MANIFEST_INVALID: EXIT.download,
  OCI_PLATFORM_NOT_FOUND: EXIT.download,
  OCI_POLICY_REJECTED: EXIT.download,
  OCI_SIGNATURE_REQUIRED: EXIT.download,
  OCI_POLICY_REQUIREMENT_UNKNOWN: EXIT.download,
  IMAGE_CHECKSUM_MISMATCH: EXIT.verify,
  OCI_DIGEST_MISMATCH: EXIT.verify,
  OCI_SIGNATURE_MISSING: EXIT.verify,
  OCI_SIGNATURE_INVALID: EXIT.verify,
  OCI_SIGNATURE_DIGEST_MISMATCH: EXIT.verify,
  OCI_SIGNATURE_IDENTITY_MISMATCH: EXIT.verify,
  IMAGE_WRITE_FAILED: EXIT.write,
  IMAGE_TOO_LARGE: EXIT.write,
  IMAGE_TEMP_NO_SPACE: EXIT.write,
  BLOCK_DEVICE_ERROR: EXIT.write,
  DISK_WIPE_FAILED: EXIT.write,
  COMMAND_FAILED: EXIT.write,
  COMMAND_NOT_FOUND: EXIT.write,
  IMAGE_FORMAT_UNSUPPORTED: EXIT.unsupported,
  IMAGE_CHECKSUM_UNSUPPORTED: EXIT.unsupported,
  OCI_ARTIFACT_INVALID: EXIT.unsupported,
  CANCELLED: EXIT.interrupted,
};

/** The exit code for an error (documented in FETCH_HELP). */
export function exitCodeFor(err: AgentError): number {
  return EXIT_BY_CODE[err.code] ?? EXIT.internal;
}

export interface FetchIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal | undefined;
  /** Test seams. */
  runner?: CommandRunner | undefined;
  ociOptions?: Partial<OciClientOptions> | undefined;
}

class UsageError extends Error {}

function parse(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      output: { type: 'string', short: 'o' },
      'output-dir': { type: 'string', short: 'd' },
      platform: { type: 'string' },
      checksum: { type: 'string' },
      insecure: { type: 'boolean' },
      authfile: { type: 'string' },
      'creds-env': { type: 'string' },
      'cert-dir': { type: 'string' },
      'ca-file': { type: 'string' },
      'temp-dir': { type: 'string' },
      json: { type: 'boolean' },
      'progress-interval': { type: 'string' },
      debug: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  return { values, positionals };
}

function parsePlatform(text: string): { os: string; architecture: string; variant?: string } {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/i.test(p))) {
    throw new UsageError(`--platform must be OS/ARCH[/VARIANT], got "${text}"`);
  }
  return { os: parts[0]!, architecture: parts[1]!, ...(parts[2] ? { variant: parts[2] } : {}) };
}

const mib = (n: number) => (n / 1048576).toFixed(1);

function progressLine(p: WriteProgress, startedMs: number): string {
  const seconds = Math.max(0.001, (performance.now() - startedMs) / 1000);
  if (p.phase === 'convert') return 'converting qcow2 to raw with qemu-img';
  if (p.phase === 'partitions') return 're-reading the partition table';
  const total = p.bytesTotal ? `/${mib(p.bytesTotal)} MiB (${Math.floor((p.bytesDownloaded * 100) / p.bytesTotal)}%)` : ' MiB';
  return `downloaded ${mib(p.bytesDownloaded)}${total}, written ${mib(p.bytesWritten)} MiB, ${mib(p.bytesDownloaded / seconds)} MiB/s`;
}

function summary(r: WriteArtifactResult): string {
  const phases = Object.entries(r.phases).map(([k, v]) => `${k} ${v.toFixed(3)} s`).join(', ');
  return `wrote ${r.bytes} bytes (${r.diskFormat}, ${r.compression === 'none' ? 'uncompressed' : r.compression}) to ${r.target.path}`
    + ` from ${r.source}: ${r.downloadedBytes} bytes downloaded, ${r.digest}${r.checksumVerified ? ' (checksum verified)' : ''},`
    + ` ${r.seconds.toFixed(3)} s${phases ? ` [${phases}]` : ''}\n`;
}

function dirSummary(r: DirFetchResult): string {
  const lines = r.files.map((f) => `  ${f.path}  ${f.size} bytes  ${f.digest}\n`).join('');
  return `wrote ${r.files.length} file(s) of ${r.reference}${r.platform ? ` (${r.platform})` : ''} from ${r.source} in ${r.seconds.toFixed(3)} s:\n${lines}`;
}

type Inputs = Awaited<ReturnType<typeof readInputs>>;

// Progress lines reuse the disk writer's shape: downloaded = written for plain files.
function fetchToDir(oci: OciClient, target: FetchTarget, inputs: Inputs, io: FetchIo, progress: ReturnType<typeof progressPrinter>): Promise<DirFetchResult> {
  return fetchArtifactToDir(oci, target.source, target.output, {
    platform: inputs.platform, credentials: inputs.credentials, signal: io.signal,
    onFile: (title, size) => {
      progress.end();
      io.stderr.write(`${title}: ${size} bytes\n`);
    },
    onProgress: (received, total) => progress.onProgress({ phase: 'download', bytesDownloaded: received, bytesTotal: total, bytesWritten: received }),
  });
}

/** registries.conf with `host` marked insecure (its entry changed, or one added). */
export function withInsecureRegistry(base: RegistriesConfig, host: string): RegistriesConfig {
  const registries = base.registries.map((r) => (r.prefix === host || r.location === host ? { ...r, insecure: true } : r));
  if (!registries.some((r) => r.prefix === host)) {
    registries.push({ prefix: host, location: host, insecure: true, blocked: false, mirrorByDigestOnly: false, mirrors: [] });
  }
  return { ...base, registries };
}

// Registries named on the command line with --insecure: added to (or marked in) registries.conf.
async function registriesWithInsecure(source: string, insecure: boolean, io: FetchIo): Promise<RegistriesConfig | undefined> {
  if (!insecure) return io.ociOptions?.registries;
  const base = io.ociOptions?.registries ?? await loadRegistriesConf(DEFAULT_REGISTRIES_CONF, DEFAULT_REGISTRIES_CONF_DIR);
  return withInsecureRegistry(base, parseReference(source).registry);
}

type FetchFlags = ReturnType<typeof parse>['values'];

interface FetchTarget {
  source: string;
  output: string;
  /** --output-dir: `output` is a directory for the artifact's files. */
  toDir: boolean;
  isOci: boolean;
  /** Seconds between plain progress lines. */
  interval: number;
}

// The checks that need no I/O; a string is what is wrong.
function checkUsage(values: FetchFlags, positionals: string[]): FetchTarget | string {
  if (positionals.length !== 1) return positionals.length === 0 ? 'missing SOURCE (oci://… or https://…)' : `exactly one SOURCE expected, got ${positionals.length}`;
  const source = positionals[0]!;
  if (!/^(oci|https?):\/\//i.test(source)) return `SOURCE must start with oci://, https:// or http://, got "${source.slice(0, 60)}"`;
  if (values.output && values['output-dir']) return '--output and --output-dir exclude each other';
  const output = values.output ?? values['output-dir'];
  if (!output) return 'missing --output FILE|DEVICE (or --output-dir DIR)';
  const toDir = values['output-dir'] !== undefined;
  if (toDir && !/^oci:\/\//i.test(source)) return '--output-dir needs an oci:// SOURCE';
  if (toDir && (values.checksum || values['temp-dir'])) return '--checksum and --temp-dir do not apply to --output-dir (every file is verified by its digest)';
  let interval = 5;
  if (values['progress-interval'] !== undefined) {
    interval = Number(values['progress-interval']);
    if (!Number.isFinite(interval) || interval < 0) return '--progress-interval must be a number of seconds ≥ 0';
  }
  return { source, output: resolve(output), toDir, isOci: /^oci:\/\//i.test(source), interval };
}

// The secret comes from an environment variable named on the command line, never from argv.
function secretFromEnv(values: FetchFlags, env: NodeJS.ProcessEnv): string | undefined {
  const name = values['creds-env'];
  if (!name) return undefined;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--creds-env takes an environment variable name, got "${name.slice(0, 40)}"`);
  const secret = env[name];
  if (!secret) throw new UsageError(`environment variable ${name} (from --creds-env) is empty or not set`);
  return secret;
}

// Everything the download needs that is read from the flags, checked before anything is fetched.
async function readInputs(values: FetchFlags, target: FetchTarget, io: FetchIo) {
  const platform = values.platform ? parsePlatform(values.platform) : undefined;
  const checksum = values.checksum ? parseChecksumString(values.checksum, true) : undefined;
  const ref = target.isOci ? parseReference(target.source) : undefined;
  const secret = secretFromEnv(values, io.env);
  if (!target.toDir && await isMounted(target.output)) {
    throw new AgentError('IMAGE_WRITE_FAILED', `${target.output} (or one of its partitions) is mounted; refusing to overwrite it`, { details: { target: target.output } });
  }
  let credentials: Credentials | undefined;
  let headers: Record<string, string> | undefined;
  if (secret && ref) credentials = credentialsFromPullSecret(parsePullSecret(secret), ref.registry, ref.repository);
  else if (secret) headers = { authorization: secret.includes(':') ? `Basic ${Buffer.from(secret).toString('base64')}` : `Bearer ${secret}` };
  return { platform, checksum, credentials, headers };
}

async function createFetchClient(values: FetchFlags, source: string, io: FetchIo, log: Logger): Promise<OciClient> {
  const registries = await registriesWithInsecure(source, values.insecure ?? false, io);
  return createOciClient({
    log,
    ...io.ociOptions,
    ...(registries ? { registries } : {}),
    authFilePaths: values.authfile ? [values.authfile] : io.ociOptions?.authFilePaths ?? defaultAuthFilePaths(io.env),
    ...(values['cert-dir'] ? { certsDirs: [values['cert-dir']] } : {}),
    env: io.env,
  });
}

// Progress on stderr: one updating line on a terminal, a plain line every `interval` seconds otherwise.
function progressPrinter(stderr: FetchIo['stderr'], interval: number) {
  const started = performance.now();
  const tty = stderr.isTTY === true;
  let lastLine = 0;
  let onTtyLine = false;
  return {
    onProgress(p: WriteProgress): void {
      const now = performance.now();
      if (tty) {
        const line = progressLine(p, started).slice(0, Math.max(20, (stderr.columns ?? 100) - 1));
        stderr.write(`\r\x1b[K${line}`);
        onTtyLine = true;
      } else if (now - lastLine >= interval * 1000 || p.phase !== 'download') {
        lastLine = now;
        stderr.write(`${progressLine(p, started)}\n`);
      }
    },
    /** Ends the updating line, if there is one, before anything else is written. */
    end(): void {
      if (onTtyLine) stderr.write('\n');
      onTtyLine = false;
    },
  };
}

/** Runs the fetch subcommand; returns the process exit code. */
export async function runFetchCli(args: string[], io: FetchIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (err) {
    io.stderr.write(`bootc-agent fetch: ${(err as Error).message}\n\n${FETCH_HELP}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(FETCH_HELP);
    return EXIT.ok;
  }
  const usage = (message: string) => {
    io.stderr.write(`bootc-agent fetch: ${message}\nRun "bootc-agent fetch --help" for usage.\n`);
    return EXIT.usage;
  };
  const target = checkUsage(values, positionals);
  if (typeof target === 'string') return usage(target);

  const log = values.debug ? createLogger({ level: 'debug', stream: io.stderr as never }) : createSilentLogger();
  let oci: OciClient | undefined;
  let progress: ReturnType<typeof progressPrinter> | undefined;
  try {
    const inputs = await readInputs(values, target, io);
    if (target.isOci) oci = await createFetchClient(values, target.source, io, log);
    const ca = values['ca-file'] ? await readFile(values['ca-file'], 'utf8') : undefined;
    progress = progressPrinter(io.stderr, target.interval);
    io.stderr.write(`fetching ${target.source.replace(/\?.*$/, '?…')} → ${target.output}\n`);
    if (target.toDir) {
      const result = await fetchToDir(oci!, target, inputs, io, progress);
      progress.end();
      io.stdout.write(values.json ? `${JSON.stringify(result)}\n` : dirSummary(result));
      return EXIT.ok;
    }
    const result = await writeArtifactToTarget({
      source: target.source, target: target.output, runner: io.runner ?? createExecaRunner(), oci, log,
      signal: io.signal,
      ...inputs,
      http: { insecure: values.insecure ?? false, ...(ca ? { ca } : {}) },
      ...(values['temp-dir'] ? { tempDir: values['temp-dir'] } : {}),
      onProgress: progress.onProgress,
    });
    progress.end();
    io.stdout.write(values.json ? `${JSON.stringify(result)}\n` : summary(result));
    return EXIT.ok;
  } catch (err) {
    progress?.end();
    if (err instanceof UsageError) return usage(err.message);
    const e = toAgentError(err);
    io.stderr.write(`bootc-agent fetch: ${describeError(e)}\n`);
    return isAgentError(e) ? exitCodeFor(e) : EXIT.internal;
  } finally {
    await oci?.close();
  }
}
