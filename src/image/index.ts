/**
 * Disk images onto disks: the `write_image` deploy step of Ironic's `direct` interface (and its
 * `standby.prepare_image` command), `oci://` disk artifacts resolved by the agent, and the
 * library call the `fetch` CLI and the benchmark use.
 *
 * @example
 * const result = await writeArtifactToTarget({
 *   source: 'oci://registry.local/disks/fedora:41', // or https://…, or a list tried in order
 *   target: '/dev/sda',                              // or a file path
 *   oci, runner, signal,
 *   onProgress: (p) => log.debug(p, 'writing'),
 * });
 * // result: { bytes, downloadedBytes, digest, seconds, phases: { network, hashing, decompress, disk, sync }, … }
 * @module
 */
export { writeArtifactToTarget } from './write.ts';
export type { DiskFormat, WriteArtifactOptions, WriteArtifactResult, WriteProgress } from './write.ts';
export type { Phases, PhaseName } from './timing.ts';
export { checkChecksum, checksumFromImageInfo, parseChecksumString } from './checksum.ts';
export type { ExpectedChecksum } from './checksum.ts';
export { isQcow2, sniffCompression } from './decompress.ts';
export type { StreamCompression } from './decompress.ts';
export { statfsFreeSpace, TEMP_RESERVE_BYTES } from './qcow2.ts';
export type { FreeSpace } from './qcow2.ts';
export { describeTarget } from './target.ts';
export type { TargetInfo } from './target.ts';
export { createStandbyImageCommands, createWriteImageStep } from './register.ts';
export type { WriteImageDepsSource } from './register.ts';
export type { WriteImageDeps } from './step.ts';
export { parseWriteImageRequest } from './request.ts';
export type { WriteImageRequest } from './request.ts';
