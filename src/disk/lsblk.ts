/**
 * `lsblk --json`: the argv, and a lenient parse of its output into flat rows.
 *
 * lsblk's JSON changed over util-linux releases (numbers and booleans were strings before
 * 2.33, tree output nests `children`), so every column accepts any of those spellings.
 * @module
 */
import { z } from 'zod';
import { AgentError, isAgentError } from '../errors.ts';
import type { CommandRunner } from '../exec/index.ts';
import { parseToolJson } from './tool-json.ts';

// All supported by util-linux 2.38 (checked with `lsblk --help`); IPA's LSBLK_COLUMNS plus
// RM, RO, HCTL, VENDOR, labels and PKNAME so no udev database is needed.
export const LSBLK_COLUMNS = [
  'KNAME', 'MODEL', 'SIZE', 'ROTA', 'TYPE', 'UUID', 'PARTUUID', 'SERIAL', 'WWN', 'LOG-SEC',
  'PHY-SEC', 'TRAN', 'RM', 'RO', 'HCTL', 'VENDOR', 'LABEL', 'PARTLABEL', 'PKNAME',
] as const;

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]).optional();

// Strings are trimmed (lsblk pads VENDOR/MODEL with spaces); empty means unknown.
const text = scalar.transform((v) => {
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const s = String(v).trim();
  return s === '' ? null : s;
});

const integer = scalar.transform((v, ctx) => {
  if (v === undefined || v === null || v === '') return null;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    ctx.addIssue({ code: 'custom', message: `expected a non-negative integer, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});

const flag = scalar.transform((v, ctx) => {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'boolean') return v;
  const s = String(v).trim().toLowerCase();
  if (s === '1' || s === 'true') return true;
  if (s === '0' || s === 'false') return false;
  ctx.addIssue({ code: 'custom', message: `expected a boolean or 0/1, got ${JSON.stringify(v)}` });
  return z.NEVER;
});

/** One lsblk row; unknown columns are ignored so newer lsblk versions do not break us. */
export const LsblkRow = z.object({
  kname: z.string().min(1),
  model: text,
  size: integer,
  rota: flag,
  type: text,
  uuid: text,
  partuuid: text,
  serial: text,
  wwn: text,
  'log-sec': integer,
  'phy-sec': integer,
  tran: text,
  rm: flag,
  ro: flag,
  hctl: text,
  vendor: text,
  label: text,
  partlabel: text,
  pkname: text,
});
export type LsblkRow = z.infer<typeof LsblkRow>;

const LsblkNode = z.looseObject({ children: z.array(z.unknown()).optional() });
const LsblkOutput = z.looseObject({ blockdevices: z.array(z.unknown()) });

/** The lsblk arguments; with `device`, only that device and its partitions are listed. */
export function buildLsblkArgs(device?: string): string[] {
  const args = ['-bia', '--json', '-o', LSBLK_COLUMNS.join(',')];
  return device === undefined ? args : [...args, '--', device];
}

/**
 * Parse `lsblk --json` output into a flat list in listing order. Nested `children` (tree
 * output) are flattened, inheriting `pkname` from their parent. A device with several
 * parents (a multipath map over two paths) appears once per parent, as in `lsblk --list`.
 */
export function parseLsblkJson(stdout: string): LsblkRow[] {
  const top = parseToolJson(stdout, LsblkOutput, {
    tool: 'lsblk', code: 'BLOCK_DEVICE_ERROR', shapeMessage: () => 'lsblk JSON has no "blockdevices" list',
  });
  const rows: LsblkRow[] = [];
  const seen = new Set<string>();
  const visit = (node: unknown, parent: string | null): void => {
    const row = LsblkRow.safeParse(node);
    if (!row.success) {
      throw new AgentError('BLOCK_DEVICE_ERROR', `lsblk JSON has an unexpected row: ${z.prettifyError(row.error)}`, {
        cause: row.error,
        details: { row: node },
      });
    }
    const value = { ...row.data, pkname: row.data.pkname ?? parent };
    const key = `${value.kname}\0${value.pkname ?? ''}`;
    if (!seen.has(key)) {
      seen.add(key);
      rows.push(value);
    }
    for (const child of LsblkNode.parse(node).children ?? []) visit(child, value.kname);
  };
  for (const node of top.blockdevices) visit(node, null);
  return rows;
}

export interface RunLsblkOptions {
  signal?: AbortSignal;
  /** List only this device (and its partitions). */
  device?: string;
}

/** Run lsblk through the injected runner and parse its output. */
export async function runLsblk(runner: CommandRunner, options: RunLsblkOptions = {}): Promise<LsblkRow[]> {
  let stdout: string;
  try {
    ({ stdout } = await runner.run('lsblk', buildLsblkArgs(options.device), { signal: options.signal }));
  } catch (err) {
    if (isAgentError(err) && err.code === 'CANCELLED') throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new AgentError('BLOCK_DEVICE_ERROR', `Listing block devices with lsblk failed: ${message}`, {
      cause: err,
      details: isAgentError(err) ? err.details : {},
    });
  }
  return parseLsblkJson(stdout);
}
