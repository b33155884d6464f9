/**
 * `scripts/publish-ramdisk oci://HOST/REPO:TAG [--amd64 DIR] [--arm64 DIR]`: pushes the ramdisk
 * build output of one or both architectures through our own OCI client, as file artifacts Ironic
 * reads (docs/oci-artifacts.md):
 *   TAG-kernel     index → per architecture a one-layer manifest: bootc-agent.kernel
 *   TAG-initramfs  index → per architecture a one-layer manifest: bootc-agent.initramfs
 *   TAG            index → per architecture a manifest with every file (kernel, initramfs,
 *                  SHA256SUMS, manifest.txt) for `bootc-agent fetch --output-dir`
 * and prints the digest-pinned URLs for `driver_info.deploy_kernel`/`deploy_ramdisk` per
 * architecture. Without SOURCE_DATE_EPOCH nothing carries a timestamp: the same files give the
 * same digests.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { withInsecureRegistry } from '../src/cli/index.ts';
import { AgentError, describeError, toAgentError } from '../src/errors.ts';
import {
  artifactIndex, artifactManifest, bufferBlob, createdFromEpoch, createOciClient, credentialsFromPullSecret,
  DEFAULT_REGISTRIES_CONF, DEFAULT_REGISTRIES_CONF_DIR, defaultAuthFilePaths, EMPTY_CONFIG_BYTES, fileBlob, loadRegistriesConf,
  MEDIA_TYPES, openRepositoryPusher, parsePullSecret, parseReference, pinnedUrl,
  type BlobInput, type OciClientOptions, type RegistriesConfig, type RepositoryPusher,
} from '../src/oci/index.ts';

const MIB = 1024 * 1024;

export const ARCHES = { amd64: { cpuArch: 'x86_64' }, arm64: { cpuArch: 'aarch64' } } as const;
export type Arch = keyof typeof ARCHES;

/** The build's files: name in the build directory (= title), media type, whether it must exist. */
export const RAMDISK_FILES = [
  { name: 'bootc-agent.kernel', part: 'kernel', mediaType: 'application/octet-stream', required: true },
  { name: 'bootc-agent.initramfs', part: 'initramfs', mediaType: 'application/octet-stream', required: true },
  { name: 'SHA256SUMS', part: undefined, mediaType: 'text/plain', required: false },
  { name: 'manifest.txt', part: undefined, mediaType: 'text/plain', required: false },
] as const;

export const ARTIFACT_TYPES = {
  kernel: 'application/vnd.bootc-agent.ramdisk.kernel.v1',
  initramfs: 'application/vnd.bootc-agent.ramdisk.initramfs.v1',
  bundle: 'application/vnd.bootc-agent.ramdisk.v1',
} as const;
type Part = keyof typeof ARTIFACT_TYPES;

export interface PublishOptions {
  /** `oci://host/repo:tag`. */
  target: string;
  /** Build output directories per architecture. */
  dirs: Partial<Record<Arch, string>>;
  client?: OciClientOptions;
  registries?: RegistriesConfig;
  /** A pull-secret shape (user:pass, base64 auth, docker config JSON, token) for the target registry. */
  secret?: string | undefined;
  chunkSize?: number | undefined;
  /** A repository on the same registry that may already hold the blobs (cross-repository mount). */
  mountFrom?: string | undefined;
  sourceDateEpoch?: string | undefined;
  log?: (line: string) => void;
}

export interface PublishedArch {
  cpuArch: string;
  deployKernel: string;
  deployRamdisk: string;
  bundle: string;
  files: Record<string, { digest: string; size: number; outcome: string }>;
}

export interface PublishResult {
  repository: string;
  tags: Record<Part, { url: string; digest: string }>;
  arches: Partial<Record<Arch, PublishedArch>>;
  /** `[conductor]deploy_kernel_by_arch` / `deploy_ramdisk_by_arch` values (keys are node `cpu_arch` values). */
  conductor: { deploy_kernel_by_arch: string; deploy_ramdisk_by_arch: string };
}

interface BuildFile { name: string; part: 'kernel' | 'initramfs' | undefined; mediaType: string; blob: BlobInput }

// The build's own SHA256SUMS must match the files: a torn or stale build is not published.
async function readBuild(arch: Arch, dir: string): Promise<BuildFile[]> {
  const files: BuildFile[] = [];
  for (const f of RAMDISK_FILES) {
    const path = join(dir, f.name);
    const exists = await stat(path).then((s) => s.isFile(), () => false);
    if (!exists) {
      if (f.required) throw new AgentError('OCI_ARTIFACT_INVALID', `${arch}: ${path} is missing (run scripts/build-ramdisk first)`, { details: { path } });
      continue;
    }
    files.push({ name: f.name, part: f.part, mediaType: f.mediaType, blob: await fileBlob(path) });
  }
  const sums = files.find((f) => f.name === 'SHA256SUMS');
  if (sums) {
    for (const line of (await readFile(join(dir, 'SHA256SUMS'), 'utf8')).split('\n')) {
      const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
      const file = m && files.find((f) => f.name === m[2]);
      if (file && file.blob.digest !== `sha256:${m[1]}`) {
        throw new AgentError('OCI_ARTIFACT_INVALID', `${arch}: ${join(dir, file.name)} does not match its line in SHA256SUMS`, { details: { file: file.name } });
      }
    }
  }
  return files;
}

async function pushArch(pusher: RepositoryPusher, arch: Arch, files: BuildFile[], options: PublishOptions, annotations: Record<string, string> | undefined) {
  const out: PublishedArch['files'] = {};
  for (const f of files) {
    const outcome = await pusher.pushBlob(f.blob, {
      chunkSize: options.chunkSize, mountFrom: options.mountFrom,
      onProgress: (sent, total) => {
        if (sent < total) options.log?.(`${arch} ${f.name}: ${(sent / MIB).toFixed(1)}/${(total / MIB).toFixed(1)} MiB sent`);
      },
    });
    options.log?.(`${arch} ${f.name}: ${f.blob.size} bytes ${f.blob.digest} (${outcome})`);
    out[f.name] = { digest: f.blob.digest, size: f.blob.size, outcome };
  }
  const manifests = {} as Record<Part, { digest: string; size: number }>;
  const parts: [Part, BuildFile[]][] = [
    ['kernel', files.filter((f) => f.part === 'kernel')],
    ['initramfs', files.filter((f) => f.part === 'initramfs')],
    ['bundle', files],
  ];
  for (const [part, chosen] of parts) {
    const bytes = artifactManifest({
      artifactType: ARTIFACT_TYPES[part], annotations,
      files: chosen.map((f) => ({ title: f.name, mediaType: f.mediaType, digest: f.blob.digest, size: f.blob.size })),
    });
    manifests[part] = await pusher.pushManifest(bytes, MEDIA_TYPES.ociManifest);
  }
  const url = (part: Part) => pinnedUrl(pusher.reference, manifests[part].digest);
  return {
    manifests,
    published: { cpuArch: ARCHES[arch].cpuArch, deployKernel: url('kernel'), deployRamdisk: url('initramfs'), bundle: url('bundle'), files: out },
  };
}

/** Push the build directories and the three tags; returns the URLs to configure. */
export async function publishRamdisk(options: PublishOptions): Promise<PublishResult> {
  const ref = parseReference(options.target);
  if (ref.digest || !ref.tag) throw new AgentError('OCI_REFERENCE_INVALID', `the target needs a tag (oci://host/repo:TAG), got ${options.target}`);
  const arches = (Object.keys(ARCHES) as Arch[]).filter((a) => options.dirs[a] !== undefined);
  if (arches.length === 0) throw new AgentError('OCI_ARTIFACT_INVALID', 'no build directory given (--amd64 DIR and/or --arm64 DIR)');
  const created = createdFromEpoch(options.sourceDateEpoch);
  const annotations = created ? { 'org.opencontainers.image.created': created } : undefined;
  const builds = await Promise.all(arches.map(async (a) => [a, await readBuild(a, options.dirs[a]!)] as const));
  const client = createOciClient({ ...options.client, ...(options.registries ? { registries: options.registries } : {}) });
  try {
    const credentials = options.secret ? credentialsFromPullSecret(parsePullSecret(options.secret), ref.registry, ref.repository) : undefined;
    const pusher = await openRepositoryPusher(client, ref, { credentials, registries: options.registries });
    await pusher.pushBlob(bufferBlob(EMPTY_CONFIG_BYTES));
    const result: PublishResult = { repository: `oci://${ref.registry}/${ref.repository}`, tags: {} as PublishResult['tags'], arches: {}, conductor: { deploy_kernel_by_arch: '', deploy_ramdisk_by_arch: '' } };
    const entries: Record<Part, { digest: string; size: number; platform: { architecture: string; os: string }; artifactType: string }[]> = { kernel: [], initramfs: [], bundle: [] };
    for (const [arch, files] of builds) {
      const { manifests, published } = await pushArch(pusher, arch, files, options, annotations);
      result.arches[arch] = published;
      for (const part of Object.keys(entries) as Part[]) {
        entries[part].push({ digest: manifests[part].digest, size: manifests[part].size, platform: { architecture: arch, os: 'linux' }, artifactType: ARTIFACT_TYPES[part] });
      }
    }
    for (const part of Object.keys(entries) as Part[]) {
      const tag = part === 'bundle' ? ref.tag : `${ref.tag}-${part}`;
      const pushed = await pusher.pushManifest(artifactIndex(entries[part], { annotations }), MEDIA_TYPES.ociIndex, tag);
      result.tags[part] = { url: `oci://${ref.registry}/${ref.repository}:${tag}`, digest: pushed.digest };
    }
    const byArch = (key: 'deployKernel' | 'deployRamdisk') => arches.map((a) => `${ARCHES[a].cpuArch}:${result.arches[a]![key]}`).join(',');
    result.conductor = { deploy_kernel_by_arch: byArch('deployKernel'), deploy_ramdisk_by_arch: byArch('deployRamdisk') };
    return result;
  } finally {
    await client.close();
  }
}

export function formatResult(r: PublishResult): string {
  const lines: string[] = [];
  for (const [arch, a] of Object.entries(r.arches)) {
    lines.push(`${arch} (cpu_arch ${a.cpuArch}):`, `  driver_info.deploy_kernel=${a.deployKernel}`, `  driver_info.deploy_ramdisk=${a.deployRamdisk}`, `  all files: ${a.bundle}`);
  }
  lines.push('tags (one per file, both architectures):');
  for (const t of Object.values(r.tags)) lines.push(`  ${t.url}  (index ${t.digest})`);
  lines.push('ironic.conf [conductor]:', `  deploy_kernel_by_arch = ${r.conductor.deploy_kernel_by_arch}`, `  deploy_ramdisk_by_arch = ${r.conductor.deploy_ramdisk_by_arch}`);
  return `${lines.join('\n')}\n`;
}

export const USAGE = `Usage: scripts/publish-ramdisk oci://HOST[:PORT]/REPO:TAG [options]

Pushes the ramdisk build output as OCI artifacts: TAG-kernel and TAG-initramfs (one file per
manifest, an index over both architectures: what Ironic reads) and TAG (every file per
architecture, for bootc-agent fetch --output-dir). Prints the digest-pinned URLs for a node's
driver_info.deploy_kernel / deploy_ramdisk.

Options
  --amd64 DIR         amd64 build output (default build/ramdisk when neither --amd64 nor --arm64)
  --arm64 DIR         arm64 build output (default build/ramdisk-arm64, when it exists)
  --authfile PATH     registry credentials (containers auth.json / docker config.json)
  --creds-env VAR     credentials from environment variable VAR (any pull-secret shape)
  --cert-dir DIR      certs.d-style directory (DIR/HOST:PORT/ca.crt)
  --insecure          do not verify the registry's TLS certificate (plain http if https fails)
  --chunk-size MIB    upload blobs larger than this in PATCH chunks of this size (default 16; 0 = one PUT)
  --mount-from REPO   mount blobs from this repository of the same registry when it has them
  --json              print the result as JSON
SOURCE_DATE_EPOCH, when set, becomes org.opencontainers.image.created; otherwise no timestamp.
Exit codes: 0 published, 1 failed, 2 bad usage.
`;

async function defaultDirs(root: string): Promise<Partial<Record<Arch, string>>> {
  const dirs: Partial<Record<Arch, string>> = {};
  for (const [arch, dir] of [['amd64', 'build/ramdisk'], ['arm64', 'build/ramdisk-arm64']] as const) {
    if (await stat(join(root, dir)).then((s) => s.isDirectory(), () => false)) dirs[arch] = join(root, dir);
  }
  return dirs;
}

async function cliOptions(args: string[], env: NodeJS.ProcessEnv): Promise<PublishOptions & { json: boolean }> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      amd64: { type: 'string' }, arm64: { type: 'string' }, authfile: { type: 'string' }, 'creds-env': { type: 'string' },
      'cert-dir': { type: 'string' }, insecure: { type: 'boolean' }, 'chunk-size': { type: 'string' }, 'mount-from': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) throw new TypeError('exactly one target oci://HOST/REPO:TAG expected');
  const target = positionals[0]!;
  const chunkMiB = values['chunk-size'] === undefined ? 16 : Number(values['chunk-size']);
  if (!Number.isFinite(chunkMiB) || chunkMiB < 0) throw new TypeError('--chunk-size takes a number of MiB ≥ 0');
  const name = values['creds-env'];
  if (name !== undefined && !env[name]) throw new TypeError(`environment variable ${name} (from --creds-env) is empty or not set`);
  const given = values.amd64 || values.arm64;
  const dirs = given ? { ...(values.amd64 ? { amd64: resolve(values.amd64) } : {}), ...(values.arm64 ? { arm64: resolve(values.arm64) } : {}) }
    : await defaultDirs(fileURLToPath(new URL('..', import.meta.url)));
  let registries: RegistriesConfig = await loadRegistriesConf(DEFAULT_REGISTRIES_CONF, DEFAULT_REGISTRIES_CONF_DIR);
  if (values.insecure) registries = withInsecureRegistry(registries, parseReference(target).registry);
  return {
    target, dirs, registries, json: values.json ?? false,
    secret: name ? env[name] : undefined,
    chunkSize: Math.round(chunkMiB * 1024 * 1024),
    mountFrom: values['mount-from'],
    sourceDateEpoch: env['SOURCE_DATE_EPOCH'],
    client: {
      env,
      authFilePaths: values.authfile ? [values.authfile] : defaultAuthFilePaths(env),
      ...(values['cert-dir'] ? { certsDirs: [values['cert-dir']] } : {}),
    },
  };
}

/** The command line; returns the exit code. */
export async function main(args: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; env: NodeJS.ProcessEnv }): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout.write(USAGE);
    return 0;
  }
  let options: Awaited<ReturnType<typeof cliOptions>>;
  try {
    options = await cliOptions(args, io.env);
  } catch (err) {
    io.stderr.write(`publish-ramdisk: ${err instanceof TypeError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? (err as Error).message : describeError(toAgentError(err))}\n\n${USAGE}`);
    return 2;
  }
  try {
    const result = await publishRamdisk({ ...options, log: (line) => io.stderr.write(`${line}\n`) });
    io.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : formatResult(result));
    return 0;
  } catch (err) {
    io.stderr.write(`publish-ramdisk: ${describeError(toAgentError(err))}\n`);
    return 1;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
}
