/**
 * The fleet section's own flags. scripts/bench.ts parses its shared flags strictly and knows
 * nothing of these, so they are taken out of process.argv when this module loads, which is before
 * bench.ts parses (its imports are evaluated first).
 * @module
 */
import { parseSize } from '../common.ts';
import type { CacheEngine } from './cache.ts';

export interface FleetOptions {
  /** Fleet sizes, run in this order (default 1, 4, 16). */
  nodes: number[];
  /** The origin link's rate, bytes per second (default 100 Mbit/s). */
  rate: number;
  /** Size of the raw disk image (default 128 MiB, incompressible). */
  rawSize: number;
  /** Whether to run the rounds with the cache killed halfway (default yes). */
  kill: boolean;
  /** Which images: raw (write_image) and/or bootc (execute_bootc_install). */
  kinds: ('raw' | 'bootc')[];
  /** Which pull-through caches the cache rounds go through, each in turn (default both). */
  caches: CacheEngine[];
}

export const FLEET_HELP = '--nodes=1,4,16 --fleet-rate=100M (bit/s) --fleet-raw-size=128M --fleet-kinds=raw,bootc --fleet-kill=yes|no --fleet-cache=distribution|nginx|both';

/** `100M` → 12.5e6 bytes/s: links are named in bits per second, decimal units. */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|b)?(?:\/s|ps)?$/i.exec(text.trim());
  if (!m) throw new Error(`--fleet-rate: bad rate "${text}" (e.g. 100M for 100 Mbit/s)`);
  const unit = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase()]!;
  return (Number(m[1]) * unit) / 8;
}

function parseNodes(text: string): number[] {
  const nodes = text.split(',').map((s) => Number(s.trim()));
  if (nodes.length === 0 || nodes.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) throw new Error(`--nodes: expected sizes 1–64, comma-separated, got "${text}"`);
  return nodes;
}

function parseKinds(text: string): FleetOptions['kinds'] {
  const kinds = text.split(',').map((s) => s.trim());
  if (kinds.length === 0 || kinds.some((k) => k !== 'raw' && k !== 'bootc')) throw new Error(`--fleet-kinds: expected raw and/or bootc, got "${text}"`);
  return kinds as FleetOptions['kinds'];
}

function parseCaches(text: string): CacheEngine[] {
  if (text === 'both') return ['distribution', 'nginx'];
  if (text !== 'distribution' && text !== 'nginx') throw new Error(`--fleet-cache: expected distribution, nginx or both, got "${text}"`);
  return [text];
}

/** Removes the fleet's flags from `argv` (in place) and returns the options they set. */
export function takeFleetFlags(argv: string[]): FleetOptions {
  const options: FleetOptions = { nodes: [1, 4, 16], rate: parseRate('100M'), rawSize: 128 * 2 ** 20, kill: true, kinds: ['raw', 'bootc'], caches: ['distribution', 'nginx'] };
  const setters: Record<string, (v: string) => void> = {
    '--nodes': (v) => { options.nodes = parseNodes(v); },
    '--fleet-rate': (v) => { options.rate = parseRate(v); },
    '--fleet-raw-size': (v) => { options.rawSize = parseSize(v); },
    '--fleet-kinds': (v) => { options.kinds = parseKinds(v); },
    '--fleet-cache': (v) => { options.caches = parseCaches(v); },
    '--fleet-kill': (v) => {
      if (v !== 'yes' && v !== 'no') throw new Error(`--fleet-kill: expected yes or no, got "${v}"`);
      options.kill = v === 'yes';
    },
  };
  for (let i = argv.length - 1; i >= 0; i--) {
    const [name = '', value] = argv[i]!.split(/=(.*)/s, 2);
    const set = setters[name];
    if (!set) continue;
    if (value === undefined) throw new Error(`${name} needs a value (${name}=…)`);
    set(value);
    argv.splice(i, 1);
  }
  return options;
}
