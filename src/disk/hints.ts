/**
 * Root device selection as ironic-python-agent does it (`device_hints.py`,
 * `hardware.py` `get_os_install_device`, `utils.py` `guess_root_disk`): devices matching
 * `skip_block_devices` are dropped, then the first device satisfying every hint wins; with
 * no hints, the smallest disk of at least 4 GiB.
 * @module
 */
import { AgentError } from '../errors.ts';
import type { BlockDevice } from './devices.ts';
import { normalizeHintValue, parseFloatStrict, parseRootDeviceHints, type NumericOp, type ParsedHint } from './hint-expression.ts';

const GIB = 2 ** 30;
/** IPA's `guess_root_disk` minimum. */
export const MIN_ROOT_DISK_BYTES = 4 * GIB;

/** What the node says about the root device (`instance_info`/`properties`). */
export interface RootDeviceSelection {
  /** The hints dict (`{ "size": ">= 100", "rotational": false }`), or nothing. */
  root_device?: unknown;
  /** A list of hint dicts; every device matching one of them is never chosen. */
  skip_block_devices?: unknown;
}

interface NodeLike {
  properties?: Record<string, unknown> | null;
  instance_info?: Record<string, unknown> | null;
}

// IPA reads instance_info.root_device first, then properties.root_device; the skip list only
// lives in properties.
export function rootDeviceSelectionFromNode(node: NodeLike | null | undefined): RootDeviceSelection {
  const fromInstance = node?.instance_info?.['root_device'];
  const fromProperties = node?.properties?.['root_device'];
  // An empty dict means "no hints" (IPA); an empty list is not a dict and is refused when parsed.
  const isEmpty = (v: unknown) => v === undefined || v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
  return {
    root_device: isEmpty(fromInstance) ? fromProperties : fromInstance,
    skip_block_devices: node?.properties?.['skip_block_devices'],
  };
}

// The ordering operators, for numbers and (with an `s` prefix) strings alike.
function ordered<T extends number | string>(op: string, device: T, hint: T): boolean {
  switch (op) {
    case '==': return device === hint;
    case '!=': return device !== hint;
    case '>=': return device >= hint;
    case '>': return device > hint;
    case '<=': return device <= hint;
    case '<': return device < hint;
    default: return false;
  }
}

function compareNumbers(op: NumericOp, device: number, hint: number): boolean {
  return op === '=' ? device >= hint : ordered(op, device, hint); // specs_matcher's legacy "=" means "at least"
}

function compareStrings(op: string, device: string, values: readonly string[]): boolean {
  const [hint = ''] = values;
  if (op === '<in>') return device.includes(hint);
  if (op === '<or>') return values.includes(device);
  return op.startsWith('s') && ordered(op.slice(1), device, hint);
}

// Device attribute as a list of normalised strings; empty when the device has no value
// (IPA skips such a device for that hint).
function deviceStrings(value: unknown): string[] {
  const list = Array.isArray(value) ? value : [value];
  return list
    .filter((v): v is string | number => (typeof v === 'string' && v.trim() !== '') || typeof v === 'number')
    .map((v) => normalizeHintValue(String(v)));
}

/** Does one device satisfy one parsed hint? */
export function matchesHint(device: BlockDevice, hint: ParsedHint): boolean {
  const raw: unknown = device[hint.name];
  switch (hint.kind) {
    case 'bool':
      return typeof raw === 'boolean' && raw === hint.value;
    case 'number': {
      if (typeof raw !== 'number') return false;
      const gib = raw / GIB; // a float: 10 GiB minus one sector does not match "== 10"
      return hint.op === '<or>' ? hint.values.includes(gib) : compareNumbers(hint.op, gib, hint.values[0] ?? NaN);
    }
    case 'range': {
      if (typeof raw !== 'number') return false;
      const gib = raw / GIB;
      const aboveLo = hint.loInclusive ? gib >= hint.lo : gib > hint.lo;
      const belowHi = hint.hiInclusive ? gib <= hint.hi : gib < hint.hi;
      return aboveLo && belowHi;
    }
    case 'string':
      return deviceStrings(raw).some((v) => compareStrings(hint.op, v, hint.values));
    case 'all-in': {
      const values = deviceStrings(raw);
      // Python `x in list` for list-valued attributes, substring for a single string.
      return values.length > 0 && hint.values.every((h) => (Array.isArray(raw) ? values.includes(h) : values[0]?.includes(h)));
    }
    case 'numeric-string':
      return deviceStrings(raw).some((v) => {
        const n = parseFloatStrict(decodeURIComponent(v));
        return n !== undefined && compareNumbers(hint.op, n, hint.value);
      });
  }
}

/** All devices matching every hint, in listing order. Throws on malformed hints. */
export function findDevicesByHints(devices: readonly BlockDevice[], hints: unknown): BlockDevice[] {
  const parsed = parseRootDeviceHints(hints);
  return devices.filter((device) => parsed.every((hint) => matchesHint(device, hint)));
}

/** Names of the devices matching any entry of `skip_block_devices` (never erased or chosen). */
export function skippedDevices(devices: readonly BlockDevice[], skipList: unknown): Set<string> {
  const skipped = new Set<string>();
  if (skipList === undefined || skipList === null) return skipped;
  if (!Array.isArray(skipList)) {
    throw new AgentError('INVALID_ROOT_DEVICE_HINTS', `skip_block_devices must be a list of hint dictionaries, got ${JSON.stringify(skipList)}`);
  }
  for (const entry of skipList) {
    // `volume_name` entries name software RAID volumes, which this agent does not build.
    if (entry !== null && typeof entry === 'object' && 'volume_name' in entry) continue;
    try {
      for (const device of findDevicesByHints(devices, entry)) skipped.add(device.name);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new AgentError('INVALID_ROOT_DEVICE_HINTS', `Invalid skip_block_devices entry ${JSON.stringify(entry)}: ${message}`, { cause: err });
    }
  }
  return skipped;
}

/** IPA's `guess_root_disk`: the smallest device of at least 4 GiB, ties broken by name. */
export function guessRootDisk(devices: readonly BlockDevice[]): BlockDevice {
  const [best] = devices
    .filter((d) => d.size >= MIN_ROOT_DISK_BYTES)
    .sort((a, b) => a.size - b.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (!best) {
    throw new AgentError(
      'DEVICE_NOT_FOUND',
      `No suitable device was found for deployment - root device hints were not provided and all found block devices are smaller than ${MIN_ROOT_DISK_BYTES}B.`,
      { details: { devices: devices.map((d) => ({ name: d.name, size: d.size })) } },
    );
  }
  return best;
}

/**
 * Pick the root device: skip-listed devices are excluded first, then the first device matching
 * all `root_device` hints, or without hints the smallest disk of at least 4 GiB.
 * Throws `INVALID_ROOT_DEVICE_HINTS` for malformed hints and `DEVICE_NOT_FOUND` when nothing fits.
 */
export function selectRootDevice(devices: readonly BlockDevice[], selection: RootDeviceSelection = {}): BlockDevice {
  const parsed = parseRootDeviceHints(selection.root_device);
  const skipped = skippedDevices(devices, selection.skip_block_devices);
  const candidates = devices.filter((d) => !skipped.has(d.name));
  if (parsed.length === 0) return guessRootDisk(candidates);
  const found = candidates.find((device) => parsed.every((hint) => matchesHint(device, hint)));
  if (!found) {
    throw new AgentError(
      'DEVICE_NOT_FOUND',
      `No suitable device was found for deployment using these hints ${JSON.stringify(selection.root_device)}`,
      {
        details: {
          root_device: selection.root_device,
          skipped: [...skipped],
          devices: devices.map((d) => d.name),
        },
      },
    );
  }
  return found;
}
