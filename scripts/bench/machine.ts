/**
 * The header: what machine the figures come from (CPU, memory, kernel, Node, the disk under the
 * temp dir, tool versions).
 * @module
 */
import { readFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { fmtBytes, run, which } from './common.ts';

async function firstLine(file: string, args: string[]): Promise<string> {
  if (!which(file)) return 'not installed';
  try {
    const r = await run(file, args, { allowFail: true });
    return (r.stdout || r.stderr).trim().split('\n')[0]!.trim();
  } catch {
    return 'not installed';
  }
}

// The filesystem and block device that back `dir`, and whether it is rotational.
async function diskOf(dir: string): Promise<string> {
  try {
    const df = await run('df', ['--output=source,fstype,size,avail', '--', dir]);
    const [source, fstype, size, avail] = df.stdout.trim().split('\n')[1]!.trim().split(/\s+/);
    let extra = '';
    if (source?.startsWith('/dev/')) {
      const name = source.slice(5).replace(/p?\d+$/, (m) => (source.includes('nvme') || source.includes('mmcblk') ? '' : m));
      const rota = await readFile(`/sys/block/${name}/queue/rotational`, 'utf8').catch(() => '');
      const model = await readFile(`/sys/block/${name}/device/model`, 'utf8').catch(() => '');
      const sched = await readFile(`/sys/block/${name}/queue/scheduler`, 'utf8').catch(() => '');
      extra = [rota.trim() === '0' ? 'non-rotational' : rota.trim() === '1' ? 'rotational' : '', model.trim(), sched.trim() ? `sched ${sched.trim()}` : '']
        .filter(Boolean).join(', ');
    }
    return `${source} (${fstype}, ${size}K total, ${avail}K free${extra ? `; ${extra}` : ''})`;
  } catch {
    return 'unknown';
  }
}

export async function machineFacts(tmp: string): Promise<string> {
  const cpu = cpus();
  const model = cpu[0]?.model.trim() ?? 'unknown';
  const flags = await readFile('/proc/cpuinfo', 'utf8').then((t) => /^flags\s*:(.*)$/m.exec(t)?.[1] ?? '').catch(() => '');
  const sha = /\bsha_ni\b/.test(flags) ? 'SHA-NI' : 'no SHA-NI';
  const rows: [string, string][] = [
    ['date (UTC)', new Date().toISOString().replace(/\.\d+Z$/, 'Z')],
    ['cpus', `${cpu.length} × ${model} (${sha})`],
    ['memory', fmtBytes(totalmem())],
    ['kernel', release()],
    ['node', `${process.version} (${process.arch})`],
    ['temp dir', `${tmp} on ${await diskOf(tmp)}`],
    ['skopeo', await firstLine('skopeo', ['--version'])],
    ['podman', await firstLine('podman', ['--version'])],
    ['docker-registry', await firstLine('docker-registry', ['--version'])],
    ['zstd', await firstLine('zstd', ['--version'])],
    ['uid', String(process.getuid?.() ?? 'n/a')],
    ['load average', `${loadAverage()} (a shared machine: other work running now skews the figures)`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

export function loadAverage(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}
