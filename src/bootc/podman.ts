/**
 * Running podman for the bootc step: pull with a short-lived auth file, probe the image's
 * bootc, run the install, and clean up containers by name.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError, isAgentError, type AgentError as AgentErrorType } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { tailOf } from '../exec/index.ts';
import type { Logger } from '../log/index.ts';
import { parseBootcVersion, type BootcVersion } from './bootc-version.ts';
import { buildProbeArgs, buildPullArgs, REPART_MARK, storeArgs, VERIFIED_PULL_POLICY, type ContainerStore } from './podman-args.ts';
import { createPullTracker, type LayerInfo, type PullProgress } from './progress.ts';

export interface PodmanDeps {
  runner: CommandRunner;
  log: Logger;
  /** Private directory (0700) under which short-lived auth files are created. */
  secretsDir: string;
  /**
   * Milliseconds before a pull is tried again, plus a random share of up to as much again
   * (default 5000; podman 4.3 has no --retry-delay of its own).
   */
  retryDelayMs?: number;
  /** Storage outside the host's default (the scratch area on the target disk). */
  store?: ContainerStore | undefined;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

// podman's debug chatter is useless in an error report; keep the lines a human wrote.
function humanTail(stderr: string): string {
  return tailOf(stderr.split('\n').filter((l) => !/^time="[^"]*" level=(debug|trace)/.test(l)).join('\n'));
}

const PERMANENT_PULL_ERRORS = /unauthorized|authentication required|denied|manifest unknown|not found|name unknown|invalid reference|no such host/i;

/**
 * `podman pull` by digest. The credentials exist on disk only for the duration of the pull, in a
 * private directory, and are deleted before this function returns — before any code from the
 * image can run (the install container is privileged and shares the host PID namespace).
 */
export async function pullImage(deps: PodmanDeps, input: {
  imageRef: string;
  authJson: string | undefined;
  layers: readonly LayerInfo[];
  signal: AbortSignal;
  onProgress: (p: PullProgress) => void;
  attempts?: number;
  /** The agent verified the image's signatures for this digest: podman's own check is bypassed for this pull. */
  signaturesVerified?: boolean;
  /**
   * Environment for this pull's registries configuration (`preparePodmanRegistries` in
   * src/oci/mirrors.ts: a private HOME whose registries.conf.d holds the node's mirrors).
   */
  registriesEnv?: Record<string, string> | undefined;
}): Promise<{ durationMs: number; attempts: number }> {
  const attempts = input.attempts ?? 3;
  const started = performance.now();
  let lastError: AgentErrorType | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    input.signal.throwIfAborted();
    await mkdir(deps.secretsDir, { recursive: true, mode: 0o700 });
    const dir = input.authJson || input.signaturesVerified ? await mkdtemp(join(deps.secretsDir, 'pull-')) : undefined;
    const authFile = dir && input.authJson ? join(dir, 'auth.json') : undefined;
    const policyFile = dir && input.signaturesVerified ? join(dir, 'policy.json') : undefined;
    const tracker = createPullTracker(input.layers);
    try {
      if (authFile) await writeFile(authFile, input.authJson!, { mode: 0o600, flag: 'wx' });
      if (policyFile) await writeFile(policyFile, VERIFIED_PULL_POLICY, { mode: 0o600, flag: 'wx' });
      await deps.runner.run('podman', ['--log-level=debug', ...storeArgs(deps.store), ...buildPullArgs(input.imageRef, authFile, policyFile)], {
        signal: input.signal,
        // c/common stages blobs in $TMPDIR before image_copy_tmp_dir (/var/tmp): on the store's disk
        ...(deps.store || input.registriesEnv ? { env: { ...input.registriesEnv, ...(deps.store ? { TMPDIR: deps.store.tmpDir } : {}) } } : {}),
        onStderrLine: (line) => {
          const p = tracker.feed(line);
          if (p) input.onProgress(p);
        },
      });
      input.onProgress({ ...tracker.snapshot(), bytes_done: tracker.snapshot().bytes_total, layers_done: input.layers.length });
      return { durationMs: performance.now() - started, attempts: attempt };
    } catch (err) {
      if (!isAgentError(err) || err.code === 'CANCELLED' || err.code === 'COMMAND_NOT_FOUND') throw err;
      const stderrTail = humanTail(String(err.details.stderr_tail ?? ''));
      lastError = new AgentError('IMAGE_PULL_FAILED', `Failed to pull container image ${input.imageRef}: ${stderrTail.split('\n').pop() ?? ''}`, {
        cause: err,
        details: { argv: err.details.argv, exit_code: err.details.exit_code, stderr_tail: stderrTail, attempt },
      });
      if (PERMANENT_PULL_ERRORS.test(stderrTail) || attempt === attempts) throw lastError;
      deps.log.warn({ attempt, err: lastError }, 'pull failed; retrying');
      await sleep((deps.retryDelayMs ?? 5000) * (1 + Math.random()), undefined, { signal: input.signal });
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
      if (authFile) await access(authFile).then(() => { throw new AgentError('INTERNAL', `auth file ${authFile} survived its removal`); }, () => undefined);
    }
  }
  throw lastError ?? new AgentError('IMAGE_PULL_FAILED', `Failed to pull ${input.imageRef}`);
}

export interface ProbeResult {
  version: BootcVersion;
  /** Concatenated install configuration files of the image (`### <path>` headers). */
  installConfig: string;
  /**
   * The image's systemd-repart definitions: with them bootc partitions through systemd-repart,
   * which sizes root from them (not --root-size) and discards the free space it leaves.
   */
  repartDefinitions: string[];
}

/**
 * `bootc --version` and the image's install config, read in an unprivileged, offline container
 * named `name`. After success the exited container is the caller's to remove (`removeContainer`),
 * which it can do while the install runs; after a failure it is removed here.
 */
export async function probeBootc(deps: PodmanDeps, imageRef: string, name: string, signal: AbortSignal): Promise<ProbeResult> {
  try {
    const result = await deps.runner.run('podman', [...storeArgs(deps.store), ...buildProbeArgs(imageRef, name)], { signal, timeoutMs: 120_000 });
    const [versionLine, ...rest] = result.stdout.split('\n');
    const repart = rest.filter((l) => l.startsWith(REPART_MARK));
    return {
      version: parseBootcVersion(versionLine ?? ''),
      installConfig: rest.filter((l) => !l.startsWith(REPART_MARK)).join('\n'),
      repartDefinitions: repart.map((l) => l.slice(REPART_MARK.length)),
    };
  } catch (err) {
    await removeContainer(deps, name);
    if (isAgentError(err) && err.code === 'COMMAND_FAILED' && (err.details.exit_code === 127 || /executable file `?(bootc|\/bin\/sh)`? not found/.test(String(err.details.stderr_tail)))) {
      throw new AgentError('BOOTC_NOT_FOUND', `Container image ${imageRef} does not contain the required bootc binary and thus cannot be deployed`, {
        cause: err, details: { argv: err.details.argv, exit_code: err.details.exit_code, stderr_tail: err.details.stderr_tail },
      });
    }
    throw err;
  }
}

/** Removes a container we started, by its name; a missing container is fine. */
export async function removeContainer(deps: PodmanDeps, name: string): Promise<void> {
  try {
    await deps.runner.run('podman', [...storeArgs(deps.store), 'rm', '--force', '--ignore', '--', name], { timeoutMs: 60_000 });
  } catch (err) {
    deps.log.warn({ err, container: name }, 'could not remove container');
  }
}

/** Whether a path exists on the host (e.g. /run/udev). */
export async function pathExists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}
