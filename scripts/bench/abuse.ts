/**
 * Issue 13: hostile and heavy clients against the agent API, replayed. The API runs in a child
 * process (the ramdisk unit's node options, HTTPS with a P-384 certificate as the agent makes,
 * a log file, `--expose-gc` so the bench can ask for a full GC before reading its RSS); a second
 * child runs 1,000 polling keep-alive TLS connections; the bench process itself only sends the
 * probes, so their latency is the agent's and not a busy client's. The child is the agent's own
 * API, commands and logger modules run by tsx, not the whole agent: its RSS is tsx's plus theirs,
 * compared with itself before and after.
 *
 * Run alone: `npm run bench -- --only=abuse`. The same file is the two children
 * (`--abuse-serve`, `--abuse-flood`).
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { connectRaw, rawRequest, type RawConnection } from '../../test/api/raw-http.ts';
import { ramdiskNode } from './bundle.ts';
import { fmtMiB, fmtSeconds, median, procMemory, ROOT, sleep, table, verdict, withTempDir, type BenchContext, type Section } from './common.ts';

const SERVE = '--abuse-serve';
const FLOOD = '--abuse-flood';
const TOKEN = 'bench-abuse-token-'.padEnd(43, 'k');
const POLLERS = 1000;
// The pollers connect from 127.0.0.1; the probes and deploys, standing for the conductor, from
// another address as the conductor's would be.
const CONDUCTOR_ADDRESS = '127.0.0.2';
const FLOOD_MEASURE_S = 12;
const NEW_CONNECTION_TARGET_S = 1;
const RSS_BACK_TARGET_KIB = 20 * 1024;
// The flood's other row: no connection or request caps and Node's own deadlines, as before issue 13
// (the rest of the fixes, the listen backlog among them, are in both rows).
const LIMITS_OFF = { api_max_connections: 1_000_000, api_max_connections_per_address: 1_000_000, api_max_requests: 1_000_000, api_header_timeout: 60, api_body_timeout: 300 };

// ---------- child: the API under test ----------

async function serve(limitsJson: string, logFile: string): Promise<void> {
  const { z } = await import('zod');
  const { createRouter, startApiServer } = await import('../../src/api/index.ts');
  const { CommandExecutor, createStepCommands, defineCommand, StepRegistry } = await import('../../src/commands/index.ts');
  const { createLogger } = await import('../../src/log/index.ts');
  const { generateSelfSignedCertificate } = await import('../../src/tls/index.ts');
  const log = createLogger({ level: 'info', file: logFile, stream: new Writable({ write(_c, _e, cb) { cb(); } }) });
  const executor = new CommandExecutor({ log });
  const steps = new StepRegistry();
  steps.register([{ interface: 'deploy', step: 'bench_step', priority: 0, reboot_requested: false, run: async () => null }]);
  executor.register([
    ...createStepCommands(steps),
    defineCommand({ name: 'bench.echo', mode: 'sync', params: z.object({ v: z.unknown() }).strict(), run: async (p) => p.v }),
  ]);
  const limits = JSON.parse(limitsJson) as Record<string, number>;
  const router = createRouter({ executor, log, agentVersion: 'bench', startedAt: 0, getToken: () => TOKEN, getInventory: async () => ({}), limits });
  const tls = { ...generateSelfSignedCertificate({ ipAddresses: ['127.0.0.1'], commonName: 'bench' }), minVersion: 'TLSv1.2' as const };
  const server = await startApiServer({ router, log, host: '127.0.0.1', port: 0, maxBodyBytes: 104_857_600, limits, tls });
  process.on('SIGUSR2', () => (globalThis as { gc?: () => void }).gc?.());
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
  process.stdout.write(`${JSON.stringify({ port: server.address.port })}\n`);
}

// ---------- child: 1,000 polling keep-alive connections ----------

async function flood(port: number, count: number): Promise<void> {
  const stats = { connected: 0, requests: 0, reconnects: 0 };
  let stopping = false;
  const request = `GET /v1/commands/?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\n\r\n`;
  const poller = async () => {
    while (!stopping) {
      let conn: RawConnection | undefined;
      try {
        conn = await connectRaw(port, { tls: true });
        stats.connected++;
        for (;;) {
          conn.write(request);
          await conn.reply(120_000);
          stats.requests++;
          await sleep(100);
        }
      } catch {
        stats.reconnects++;
        conn?.destroy();
        await sleep(10);
      }
    }
  };
  process.on('SIGTERM', () => {
    stopping = true;
    process.stdout.write(`${JSON.stringify(stats)}\n`, () => process.exit(0));
  });
  process.stdout.write('started\n');
  await Promise.all(Array.from({ length: count }, poller));
}

// ---------- the bench side ----------

interface Harness {
  port: number;
  pid: number;
  logFile: string;
  /** RSS (KiB) after a full GC in the API's process. */
  settledRss(): Promise<number | undefined>;
  stop(): Promise<void>;
}

const tsxChild = (args: string[]) => [...ramdiskNode(), '--expose-gc', '--import', 'tsx', join(ROOT, 'scripts/bench/abuse.ts'), ...args];

function firstLine(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    child.stdout!.setEncoding('utf8').on('data', function onData(d: string) {
      out += d;
      if (out.includes('\n')) {
        child.stdout!.off('data', onData);
        resolve(out.slice(0, out.indexOf('\n')));
      }
    });
    child.once('exit', (code) => reject(new Error(`${what} exited ${code}: ${err.trim().slice(-400)}`)));
  });
}

async function stopChild(child: ChildProcess): Promise<string> {
  if (child.exitCode !== null || child.signalCode !== null) return '';
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
  return out;
}

async function startHarness(dir: string, limits: Record<string, number>): Promise<Harness> {
  const logFile = join(dir, 'agent.log');
  const argv = tsxChild([SERVE, JSON.stringify(limits), logFile]);
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const { port } = JSON.parse(await firstLine(child, 'the API')) as { port: number };
  // One ordinary request first: idle means "has answered", not "has just started".
  await rawRequest(port, `GET /v1/commands/?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n`, { tls: true });
  return {
    port, pid: child.pid!, logFile,
    settledRss: async () => {
      child.kill('SIGUSR2');
      await sleep(1000);
      return (await procMemory(child.pid!))?.rssKiB;
    },
    stop: async () => { await stopChild(child); },
  };
}

/** Samples the RSS of `pid` every 50 ms while `work` runs; returns its result and the highest RSS seen. */
async function peakRssDuring<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; peakKiB: number }> {
  let peakKiB = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peakKiB = Math.max(peakKiB, (await procMemory(pid))?.rssKiB ?? 0);
      await sleep(50);
    }
  })();
  try {
    return { result: await work(), peakKiB };
  } finally {
    running = false;
    await sampler;
  }
}

/** Seconds `fn` took, or undefined when it failed. */
async function timed(fn: () => Promise<unknown>): Promise<number | undefined> {
  const started = performance.now();
  try {
    await fn();
    return (performance.now() - started) / 1000;
  } catch {
    return undefined;
  }
}

const authorized = (path: string) => `${path}${path.includes('?') ? '&' : '?'}agent_token=${TOKEN}`;
const postHead = (query: string, length: number) =>
  `POST /v1/commands/?${query} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;

/** One unauthenticated upload declaring 100 MiB and pushing up to 95 MiB, as fast as the agent takes it. */
async function upload(port: number): Promise<{ status?: number; sentMiB: number; replyS?: number }> {
  const conn = await connectRaw(port, { tls: true });
  const started = performance.now();
  const outcome: { status?: number; replyS?: number } = {};
  const replied = conn.reply(60_000).then((r) => { outcome.status = r.status; outcome.replyS = (performance.now() - started) / 1000; }, () => undefined);
  conn.write(postHead('agent_token=wrong', 104_857_600));
  const chunk = Buffer.alloc(2 ** 20, 0x20);
  const socket = conn.socket as TLSSocket;
  for (let sent = 0; sent < 95 * 2 ** 20 && !socket.destroyed && outcome.status === undefined; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((resolve) => { socket.once('drain', resolve); socket.once('close', resolve); });
  }
  await Promise.race([replied, conn.closed(30_000).catch(() => undefined)]);
  const sentMiB = socket.bytesWritten / 2 ** 20;
  conn.destroy();
  return { ...outcome, sentMiB };
}

/** A connection that sends `head` and then one more byte every second: when was it closed, with what reply. */
async function trickle(port: number, head: string, byte: string): Promise<{ status?: number; closedS?: number }> {
  const conn = await connectRaw(port, { tls: true });
  const started = performance.now();
  conn.write(head);
  const timer = setInterval(() => { if (!conn.socket.destroyed) conn.write(byte); }, 1000);
  const outcome: { status?: number; closedS?: number } = {};
  void conn.reply(200_000).then((r) => { outcome.status = r.status; }, () => undefined);
  outcome.closedS = await conn.closed(200_000).then(() => (performance.now() - started) / 1000, () => undefined);
  clearInterval(timer);
  conn.destroy();
  return outcome;
}

const MALFORMED: Array<[string, string]> = [
  ['GET //[?agent_token=T', `GET //[?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\n\r\n`],
  ['GET //[::1?agent_token=T', `GET //[::1?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\n\r\n`],
  ['GET //a:b@?agent_token=T', `GET //a:b@?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\n\r\n`],
  ['GET http://[?agent_token=T', `GET http://[?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\n\r\n`],
  ['duplicate Content-Length', `${postHead(`agent_token=${TOKEN}`, 2).replace('\r\n\r\n', '\r\nContent-Length: 2\r\n\r\n')}{}`],
  ['Content-Length + Transfer-Encoding', `${postHead(`agent_token=${TOKEN}`, 2).replace('\r\n\r\n', '\r\nTransfer-Encoding: chunked\r\n\r\n')}2\r\n{}\r\n0\r\n\r\n`],
  ['bad chunking', `POST /v1/commands/?agent_token=${TOKEN} HTTP/1.1\r\nHost: agent\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`],
  ['20 KiB of headers', `GET /v1/status HTTP/1.1\r\nHost: agent\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
];

async function malformedRows(port: number): Promise<string[][]> {
  const rows: string[][] = [];
  for (const [what, request] of MALFORMED) {
    const reply = await rawRequest(port, request, { tls: true, ms: 10_000 }).catch(() => undefined);
    let code = '';
    try {
      code = reply ? String((JSON.parse(reply.body) as { error_code?: unknown }).error_code ?? '') : '';
    } catch {
      code = 'not JSON';
    }
    rows.push([what, reply ? String(reply.status) : 'no reply', reply?.headers['content-type'] ?? '', code, reply?.closedAfter ? 'yes' : 'no']);
  }
  return rows;
}

/** One authorized request with 10⁶ parameter keys; a keep-alive probe measures how long the event loop is held meanwhile. */
async function manyKeys(port: number): Promise<{ status?: number; replyS?: number; worstProbeS: number }> {
  const keys = Array.from({ length: 1_000_000 }, (_, i) => `"key${i}":${i}`).join(',');
  const body = `{"name":"bench.echo","params":{"v":{${keys}}}}`;
  const probe = await connectRaw(port, { tls: true });
  let worstProbeS = 0;
  let running = true;
  const probing = (async () => {
    while (running) {
      const started = performance.now();
      probe.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
      await probe.reply(60_000).catch(() => undefined);
      worstProbeS = Math.max(worstProbeS, (performance.now() - started) / 1000);
      await sleep(5);
    }
  })();
  const started = performance.now();
  const reply = await rawRequest(port, `${postHead(`agent_token=${TOKEN}`, Buffer.byteLength(body))}${body}`, { tls: true, ms: 60_000 }).catch(() => undefined);
  const replyS = (performance.now() - started) / 1000;
  running = false;
  await probing;
  probe.destroy();
  return { ...(reply ? { status: reply.status } : {}), replyS, worstProbeS };
}

async function logFacts(logFile: string): Promise<{ mode: string; tokenLines: number; longestLine: number; bytes: number }> {
  const [text, info] = await Promise.all([readFile(logFile, 'utf8'), stat(logFile)]);
  const lines = text.split('\n');
  return {
    mode: (info.mode & 0o777).toString(8).padStart(4, '0'),
    tokenLines: lines.filter((l) => l.includes(TOKEN)).length,
    longestLine: Math.max(...lines.map((l) => l.length)),
    bytes: info.size,
  };
}

interface FloodResult {
  /** From the conductor's address. */
  newConnectionS: (number | undefined)[];
  /** From the pollers' own address. */
  samePlaceS: (number | undefined)[];
  /** The kernel's count of connections dropped because the accept queue was full (whole machine). */
  listenOverflows?: number | undefined;
  deploy: { status?: number; seconds?: number }[];
  idleKiB?: number | undefined;
  peakKiB: number;
  afterKiB?: number | undefined;
  stats: string;
}

/** A new connection's first reply while the flood runs: TLS handshake and `GET /v1/status`. */
const newConnection = (port: number, localAddress?: string) => timed(async () => {
  const reply = await rawRequest(port, 'GET /v1/status HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n', { tls: true, ms: 60_000, ...(localAddress ? { localAddress } : {}) });
  if (reply.status !== 200) throw new Error(`status ${reply.status}`);
});

/** A deploy step posted on a new connection: seconds until the agent answered that it runs. */
async function deployPost(port: number, localAddress: string): Promise<{ status?: number; seconds?: number }> {
  const body = JSON.stringify({ name: 'deploy.execute_deploy_step', params: { step: { interface: 'deploy', step: 'bench_step', args: {} }, node: {}, ports: [] } });
  let status: number | undefined;
  const seconds = await timed(async () => { status = (await rawRequest(port, `${postHead(`agent_token=${TOKEN}`, body.length)}${body}`, { tls: true, ms: 60_000, localAddress })).status; });
  return { ...(status === undefined ? {} : { status }), ...(seconds === undefined ? {} : { seconds }) };
}

async function floodRun(ctx: BenchContext, dir: string, limits: Record<string, number>): Promise<FloodResult> {
  const h = await startHarness(dir, limits);
  try {
    const idleKiB = await h.settledRss();
    const argv = tsxChild([FLOOD, String(h.port), String(POLLERS)]);
    const flooder = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stats = '';
    const { result, peakKiB } = await peakRssDuring(h.pid, async () => {
      try {
        await firstLine(flooder, 'the flood');
        ctx.log(`flood: ${POLLERS} pollers started`);
        await sleep(5000);
        const probes: Promise<number | undefined>[] = [];
        const samePlace: Promise<number | undefined>[] = [];
        const deploys: Promise<{ status?: number; seconds?: number }>[] = [];
        const overflows = await listenOverflows();
        for (let s = 0; s < FLOOD_MEASURE_S; s++) {
          probes.push(newConnection(h.port, CONDUCTOR_ADDRESS));
          if (s % 4 === 2) deploys.push(deployPost(h.port, CONDUCTOR_ADDRESS));
          await sleep(500);
          samePlace.push(newConnection(h.port));
          await sleep(500);
        }
        const [newConnectionS, samePlaceS, deploy] = await Promise.all([Promise.all(probes), Promise.all(samePlace), Promise.all(deploys)]);
        const after = await listenOverflows();
        return { newConnectionS, samePlaceS, deploy, listenOverflows: after === undefined || overflows === undefined ? undefined : after - overflows };
      } finally {
        stats = (await stopChild(flooder)).trim().split('\n').pop() ?? '';
      }
    });
    await sleep(2000);
    return { ...result, idleKiB, peakKiB, afterKiB: await h.settledRss(), stats };
  } finally {
    await h.stop();
  }
}

// "answered/asked, median, worst" of the probes' seconds (undefined: no reply within 60 s).
function fmtProbes(times: (number | undefined)[]): string {
  const ok = times.filter((t): t is number => t !== undefined);
  return `${ok.length}/${times.length}, ${fmtSeconds(ok.length ? median(ok) : undefined)}, ${ok.length ? fmtSeconds(Math.max(...ok)) : 'n/a'}`;
}

function floodRows(label: string, r: FloodResult): string[] {
  const deploys = r.deploy.map((d) => (d.seconds === undefined ? 'no reply' : `${fmtSeconds(d.seconds)} (${d.status})`)).join(', ');
  return [
    label, fmtProbes(r.newConnectionS), deploys, fmtProbes(r.samePlaceS), String(r.listenOverflows ?? 'n/a'),
    `${fmtMiB(r.idleKiB)} → ${fmtMiB(r.peakKiB)} → ${fmtMiB(r.afterKiB)}`,
  ];
}

/** TcpExt ListenOverflows from /proc/net/netstat (undefined when it cannot be read). */
async function listenOverflows(): Promise<number | undefined> {
  const text = await readFile('/proc/net/netstat', 'utf8').catch(() => '');
  const [names, values] = text.split('\n').filter((l) => l.startsWith('TcpExt:')).map((l) => l.split(/\s+/));
  const at = names?.indexOf('ListenOverflows') ?? -1;
  return at > 0 && values?.[at] !== undefined ? Number(values[at]) : undefined;
}

async function abuseRun(ctx: BenchContext, dir: string): Promise<{ idle?: number | undefined; after?: number | undefined }> {
  const h = await startHarness(dir, {});
  try {
    const idle = await h.settledRss();
    // Trickles run beside everything else: the one with the token lasts api_body_timeout (120 s).
    const trickles = Promise.all([
      trickle(h.port, postHead('agent_token=wrong', 1000), '{'),
      trickle(h.port, 'GET /v1/status HTTP/1.1\r\nHost: agent\r\n', 'X: y\r\n'),
      trickle(h.port, postHead(`agent_token=${TOKEN}`, 1000), '{'),
    ]);
    ctx.log('abuse: 8 uploads');
    const { result: uploads, peakKiB } = await peakRssDuring(h.pid, () => Promise.all(Array.from({ length: 8 }, () => upload(h.port))));
    const afterUploads = await h.settledRss();
    const answered = uploads.filter((u) => u.replyS !== undefined);
    console.log(`  8 unauthenticated POSTs declaring Content-Length 104857600, each pushing up to 95 MiB: ${answered.length} read a reply (${[...new Set(answered.map((u) => u.status))].join('/')}, `
      + `median ${fmtSeconds(answered.length ? median(answered.map((u) => u.replyS!)) : undefined)}), ${uploads.length - answered.length} were reset while still sending; `
      + `each client got ${median(uploads.map((u) => u.sentMiB)).toFixed(1)} MiB (median) into its socket before the agent closed it`);
    console.log(`  agent RSS: idle ${fmtMiB(idle)}, peak during the uploads ${fmtMiB(peakKiB)}, after they closed and a full GC ${fmtMiB(afterUploads)}`);
    ctx.log('abuse: malformed requests');
    console.log(table(['malformed request', 'status', 'content-type', 'error_code', 'closed'], await malformedRows(h.port)));
    ctx.log('abuse: 10^6 keys');
    const keys = await manyKeys(h.port);
    console.log(`  one authorized POST with 10⁶ parameter keys (15 MB): ${keys.status ?? 'no reply'} after ${fmtSeconds(keys.replyS)}; a keep-alive probe's worst wait meanwhile ${fmtSeconds(keys.worstProbeS)}`);
    ctx.log('abuse: waiting for the trickles to be closed');
    const [wrong, headers, right] = await trickles;
    const fmtTrickle = (t: { status?: number; closedS?: number }) => `${t.status ?? 'no reply'}, closed after ${t.closedS === undefined ? 'never (200 s)' : fmtSeconds(t.closedS)}`;
    console.log(`  a byte a second: body with a wrong token ${fmtTrickle(wrong)}; headers ${fmtTrickle(headers)}; body with the token ${fmtTrickle(right)}`);
    const after = await h.settledRss();
    const log = await logFacts(h.logFile);
    console.log(`  agent.log: mode ${log.mode}, ${log.tokenLines} lines holding the token, longest line ${log.longestLine} bytes, ${log.bytes} bytes in all`);
    return { idle, after };
  } finally {
    await h.stop();
  }
}

async function runAbuse(ctx: BenchContext): Promise<void> {
  await withTempDir(ctx.tmp, 'abuse-', async (dir) => {
    console.log('  the API in its own process (HTTPS, P-384, the ramdisk unit\'s node options, default limits); the bench sends the requests');
    const abuse = await abuseRun(ctx, dir);
    console.log(`\n  ${POLLERS} polling keep-alive TLS connections (one GET /v1/commands/ each 100 ms, reconnecting at once when closed), in another process;`);
    console.log(`  meanwhile, each second for ${FLOOD_MEASURE_S} s, a new connection (TLS + GET /v1/status) from the conductor's address (${CONDUCTOR_ADDRESS})`);
    console.log('  and one from the pollers\' own, and three deploy POSTs from the conductor\'s (answered/asked, median, worst; no reply within 60 s counts as unanswered):');
    const off = await floodRun(ctx, dir, LIMITS_OFF);
    const on = await floodRun(ctx, dir, {});
    console.log(table(
      ['API limits', 'conductor: new connection', 'deploy POST answered after', 'pollers\' address: new connection', 'listen overflows', 'RSS idle → peak → after (GC)'],
      [floodRows('no caps', off), floodRows('defaults', on)],
    ));
    console.log(`  flood clients (no caps / defaults): ${off.stats} / ${on.stats}`);
    const worst = on.newConnectionS.every((t) => t !== undefined) ? Math.max(...(on.newConnectionS as number[])) : undefined;
    const back = [abuse.after !== undefined && abuse.idle !== undefined ? abuse.after - abuse.idle : undefined, on.afterKiB !== undefined && on.idleKiB !== undefined ? on.afterKiB - on.idleKiB : undefined];
    const worstBack = back.every((b) => b !== undefined) ? Math.max(...(back as number[])) : undefined;
    console.log(`  targets: a new connection served within ${NEW_CONNECTION_TARGET_S} s under ${POLLERS} pollers → worst ${fmtSeconds(worst)} ${verdict(worst === undefined ? undefined : worst <= NEW_CONNECTION_TARGET_S)}; `
      + `RSS back within ${RSS_BACK_TARGET_KIB / 1024} MiB of idle after abuse → ${worstBack === undefined ? 'n/a' : `+${fmtMiB(worstBack)}`} ${verdict(worstBack === undefined ? undefined : worstBack <= RSS_BACK_TARGET_KIB)}`);
  });
}

export const abuseSection: Section = {
  name: 'abuse',
  title: 'hostile and heavy clients against the agent API (issue 13)',
  run: runAbuse,
};

// The children: this file run by node with one of the two flags.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [flag, a, b] = process.argv.slice(2);
  if (flag === SERVE) await serve(a!, b!);
  else if (flag === FLOOD) await flood(Number(a), Number(b));
}
