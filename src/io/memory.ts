/**
 * How much room a directory and the machine's memory have: the admission of the bootc step's
 * container storage and write_image's qcow2 copy both ask, and both must count a tmpfs (the
 * ramdisk's storage) against the memory it lives in.
 * @module
 */
import { readFile, statfs } from 'node:fs/promises';

// statfs(2) magic numbers of memory-backed filesystems.
const MEMORY_FS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

/** `MemAvailable` of /proc/meminfo (or of the text `meminfo` gives) in bytes; 0 when absent. */
export async function readMemAvailable(meminfo?: () => Promise<string>): Promise<number> {
  const text = await (meminfo ?? (() => readFile('/proc/meminfo', 'utf8')))();
  const kib = /^MemAvailable:\s+(\d+) kB/m.exec(text);
  return kib ? Number(kib[1]) * 1024 : 0;
}

/** Free bytes for an unprivileged writer in `path` (statfs `bavail × bsize`), and whether they are memory. */
export async function statStorage(path: string): Promise<{ freeBytes: number; memoryBacked: boolean }> {
  const s = await statfs(path);
  return { freeBytes: Number(s.bavail) * Number(s.bsize), memoryBacked: MEMORY_FS.has(Number(s.type)) };
}
