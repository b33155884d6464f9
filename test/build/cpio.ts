/**
 * Reads the entries of a cpio archive in the kernel's `newc` format (what scripts/build-ramdisk
 * packs) from a stream, without unpacking it: names, modes, owners, times, sizes, and the data of
 * the entries a caller asks for. The tests use it to check the initramfs itself.
 * @module
 */
import type { Readable } from 'node:stream';

export interface CpioEntry {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  /** The file's bytes, when its name was asked for. */
  data?: Buffer;
}

const HEADER = 110;
const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Every entry of a newc archive, in archive order, up to the TRAILER!!! entry. */
export async function readNewc(stream: Readable, keepData: (name: string) => boolean = () => false): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [];
  let buf: Buffer = Buffer.alloc(0);
  let need = HEADER;
  let state: 'header' | 'name' | 'data' = 'header';
  let current: CpioEntry | undefined;
  let nameSize = 0;
  let skip = 0;
  let done = false;
  const field = (h: Buffer, i: number) => Number.parseInt(h.subarray(6 + i * 8, 14 + i * 8).toString('ascii'), 16);
  for await (const chunk of stream) {
    if (done) continue;
    buf = buf.length ? Buffer.concat([buf, chunk as Buffer]) : (chunk as Buffer);
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        buf = buf.subarray(n);
        skip -= n;
        if (skip > 0) break;
      }
      if (buf.length < need) break;
      if (state === 'header') {
        const h = buf.subarray(0, HEADER);
        const magic = h.subarray(0, 6).toString('ascii');
        if (magic !== '070701') throw new Error(`not a newc cpio entry at entry ${entries.length}: magic ${JSON.stringify(magic)}`);
        current = { name: '', mode: field(h, 1), uid: field(h, 2), gid: field(h, 3), nlink: field(h, 4), mtime: field(h, 5), size: field(h, 6) };
        nameSize = field(h, 11);
        buf = buf.subarray(HEADER);
        need = nameSize + pad4(HEADER + nameSize);
        state = 'name';
      } else if (state === 'name') {
        current!.name = buf.subarray(0, nameSize - 1).toString('utf8');
        buf = buf.subarray(need);
        if (current!.name === 'TRAILER!!!') { done = true; break; }
        entries.push(current!);
        if (keepData(current!.name)) { need = current!.size; state = 'data'; } else {
          skip = current!.size + pad4(current!.size);
          need = HEADER;
          state = 'header';
        }
      } else {
        current!.data = Buffer.from(buf.subarray(0, current!.size));
        buf = buf.subarray(current!.size);
        skip = pad4(current!.size);
        need = HEADER;
        state = 'header';
      }
    }
  }
  if (!done) throw new Error(`the archive ended without its trailer after ${entries.length} entries`);
  return entries;
}
