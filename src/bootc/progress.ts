/**
 * Turns podman's and bootc's output lines into progress reports. Pure: fed line by line.
 * @module
 */

export interface LayerInfo {
  digest: string;
  size: number;
}

export interface PullProgress {
  bytes_done: number;
  bytes_total: number;
  layers_done: number;
  layers_total: number;
}

/**
 * Tracks `podman --log-level=debug pull` output. Without a TTY podman prints no byte counts, but
 * c/storage commits layers in manifest order and logs "Applying tar" as each one lands, and
 * "Copying blob … skipped: already exists" for layers it has; each such line completes a layer.
 */
export function createPullTracker(layers: readonly LayerInfo[]) {
  const done = new Set<string>();
  let applied = 0;
  const total = layers.reduce((a, l) => a + l.size, 0);
  const snapshot = (): PullProgress => {
    const bytes = layers.reduce((a, l) => a + (done.has(l.digest) ? l.size : 0), 0);
    return { bytes_done: bytes, bytes_total: total, layers_done: done.size, layers_total: layers.length };
  };
  return {
    /** Feeds one output line; returns a new snapshot when the line changed the progress. */
    feed(line: string): PullProgress | undefined {
      const skipped = /Copying blob (sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}) skipped/.exec(line);
      if (skipped && layers.some((l) => l.digest === skipped[1]) && !done.has(skipped[1]!)) {
        done.add(skipped[1]!);
        return snapshot();
      }
      if (/Applying tar in /.test(line)) {
        // the next layer, in manifest order, that is not done yet
        while (applied < layers.length && done.has(layers[applied]!.digest)) applied++;
        const layer = layers[applied];
        if (layer) {
          done.add(layer.digest);
          applied++;
          return snapshot();
        }
      }
      if (/Writing manifest to image destination/.test(line) && done.size < layers.length) {
        for (const l of layers) done.add(l.digest);
        return snapshot();
      }
      return undefined;
    },
    snapshot,
  };
}

// bootc's stdout milestones (bootc-install.md §1.5), in the order bootc prints them.
const BOOTC_MILESTONES: ReadonlyArray<[RegExp, string]> = [
  [/^Installing image:/, 'installing image'],
  [/^Wiping /, 'wiping disk'],
  [/^Block setup:/, 'block setup'],
  [/^Initializing partitions/, 'partitioning'],
  [/^Initializing LUKS/, 'initializing LUKS'],
  [/^Enrolling root device with TPM/, 'enrolling TPM'],
  [/^Creating root filesystem/, 'creating root filesystem'],
  [/^Creating ESP filesystem/, 'creating ESP'],
  [/^Initializing ostree layout/, 'initializing ostree'],
  [/^(layers already present|Fetched layers|Deploying container image)/, 'deploying image'],
  [/^Injected: /, 'injecting files'],
  [/^Installing bootloader/, 'installing bootloader'],
  [/^Trimming /, 'trimming'],
  [/^Finalizing filesystem/, 'finalizing'],
  [/^Unmounting filesystems/, 'unmounting'],
  [/^Closing root LUKS/, 'closing LUKS'],
  [/^Installation complete!/, 'installation complete'],
];

/** The milestone a bootc output line announces, or undefined for ordinary lines. */
export function bootcMilestone(line: string): string | undefined {
  const text = line.trim();
  for (const [pattern, name] of BOOTC_MILESTONES) if (pattern.test(text)) return name;
  return undefined;
}
