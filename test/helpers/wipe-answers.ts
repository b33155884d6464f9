/**
 * Scripted answers (test/helpers/fake-runner.ts) for erasing a disk's metadata the way
 * src/disk/wipe.ts does it: `lsblk` of one device from a captured listing, a 1 MiB disk of
 * 512-byte sectors without a partition table, and every write command succeeding.
 * @module
 */
import type { ScriptedCall } from './fake-runner.ts';

export function wipeAnswers(blockdevices: ReadonlyArray<Record<string, unknown>>): ScriptedCall[] {
  return [
    {
      argv: (a) => a[0] === 'lsblk', times: Infinity,
      respond: (a) => {
        const dev = String(a.at(-1)).slice('/dev/'.length);
        return { stdout: JSON.stringify({ blockdevices: blockdevices.filter((b) => b.kname === dev || b.pkname === dev) }) };
      },
    },
    { argv: (a) => a[0] === 'blockdev' && a[1] === '--getss', stdout: '512\n', times: Infinity },
    { argv: (a) => a[0] === 'blockdev' && a[1] === '--getsize64', stdout: '1048576\n', times: Infinity },
    // No partition table for the wipe to read.
    { argv: (a) => a[0] === 'sfdisk', exitCode: 1, stderr: 'sfdisk: does not contain a recognized partition table', times: Infinity },
    { argv: (a) => ['partx', 'wipefs', 'dd', 'sgdisk'].includes(a[0]!), times: Infinity },
  ];
}
