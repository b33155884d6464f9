/**
 * Subcommands of the bootc-agent binary besides the agent itself.
 * @example
 * process.exitCode = await runFetchCli(['oci://registry.local/disks/os:1', '-o', '/dev/sdb'], { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * @module
 */
export { EXIT, exitCodeFor, FETCH_HELP, runFetchCli, withInsecureRegistry } from './fetch.ts';
export { fetchArtifactToDir } from './fetch-dir.ts';
export type { DirFetchFile, DirFetchOptions, DirFetchResult } from './fetch-dir.ts';
export type { FetchIo } from './fetch.ts';
export { isMounted } from './mounts.ts';
