/**
 * The pull-through caches the fleet deploys through, as a registry mirror on 127.0.0.1 with TLS
 * (its own throwaway certificate) and a port it keeps across restarts (agents name it in their
 * mirror settings). `kill()` is a SIGKILL to the cache's whole process group — a cache that dies,
 * not one that shuts down politely; `start()` again serves what it had stored; `wipe()` empties
 * the store for a cold run. Two engines: Debian's `docker-registry` (distribution) with
 * `proxy: remoteurl:` (here), and nginx's proxy_cache (nginx.ts).
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { createTestCertificate, REGISTRY_BIN, type TestCertificate } from '../../../test/helpers/registry.ts';
import { deferCleanup, sleep } from '../common.ts';

export type CacheEngine = 'distribution' | 'nginx';

export interface PullThroughCache {
  engine: CacheEngine;
  /** `127.0.0.1:<port>` */
  host: string;
  cert: TestCertificate;
  running(): boolean;
  /** The running process and its children, e.g. nginx's workers (for their CPU time). */
  pids(): Promise<number[]>;
  start(): Promise<void>;
  kill(): Promise<void>;
  /** Removes everything the cache stored (it must be stopped). */
  wipe(): Promise<void>;
  /** Requests the cache answered since the last call, counted by method, kind and status. */
  takeRequests(): Promise<string>;
  /** Kills it and removes its files. */
  remove(): Promise<void>;
}

/** Where a cache keeps its files, and the certificate and port it serves on. */
export interface CacheHome {
  dir: string;
  cert: TestCertificate;
  host: string;
  /** What it stores: removed by `wipe()`. */
  data: string;
  /** Its access log, read and emptied by `takeRequests()`. */
  log: string;
}

/**
 * A port free now on 127.0.0.1 and below the kernel's ephemeral range: a cache is restarted on the
 * same port every round, and a port from the ephemeral range (port 0) can meanwhile be the local
 * end of some outgoing connection (the agents' own to the other cache), which makes bind() fail.
 */
async function stablePort(): Promise<number> {
  const [low = 32768] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '')).trim().split(/\s+/).map(Number);
  for (let i = 0; i < 200; i++) {
    const port = 10_000 + Math.floor(Math.random() * Math.max(1, low - 10_000));
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }
  throw new Error(`no free port on 127.0.0.1 between 10000 and ${low}`);
}

export async function cacheHome(parent: string, prefix: string): Promise<CacheHome> {
  const dir = await mkdtemp(join(parent, prefix));
  const cert = await createTestCertificate(dir);
  return { dir, cert, host: `127.0.0.1:${await stablePort()}`, data: join(dir, 'data'), log: join(dir, 'access.log') };
}

export interface CacheProcess {
  engine: CacheEngine;
  home: CacheHome;
  /** The command, its arguments and environment. */
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Directories to create before each start. */
  dirs: string[];
  /** Counts the requests in the access log's text. */
  countRequests(text: string): string;
}

/**
 * Runs a cache as its own process group (nginx's workers outlive a killed master otherwise),
 * stderr appended to `cache.log`, ready once `/v2/` answers over TLS.
 */
export function cacheProcess(p: CacheProcess): PullThroughCache {
  const { home } = p;
  const probe = new Agent({ connect: { ca: home.cert.cert } });
  let child: ChildProcess | undefined;

  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (!child || !running()) return;
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    process.kill(-child.pid!, 'SIGKILL');
    await exited;
  };
  const start = async () => {
    for (const d of [home.data, ...p.dirs]) await mkdir(d, { recursive: true });
    const log = await open(join(home.dir, 'cache.log'), 'a');
    try {
      child = spawn(p.argv[0]!, p.argv.slice(1), { stdio: ['ignore', log.fd, log.fd], env: p.env, detached: true });
    } finally {
      await log.close();
    }
    for (let i = 0; i < 100 && running(); i++) {
      const ok = await request(`https://${home.host}/v2/`, { dispatcher: probe }).then(async (r) => { await r.body.dump(); return true; }, () => false);
      if (ok) return;
      await sleep(100);
    }
    await kill();
    const said = await readFile(join(home.dir, 'cache.log'), 'utf8').catch(() => '');
    throw new Error(`the ${p.engine} cache did not start: ${said.trim().split('\n').slice(-3).join(' | ')}`);
  };
  const remove = deferCleanup(async () => {
    await kill();
    await probe.close();
    await rm(home.dir, { recursive: true, force: true });
    // The agents' registry_mirrors ca= put the cache's CA under its host:port, which is ours alone.
    await rm(join('/etc/containers/certs.d', home.host), { recursive: true, force: true });
  });
  return {
    engine: p.engine, host: home.host, cert: home.cert, running, start, kill, remove,
    pids: async () => {
      if (!running()) return [];
      const children = await readFile(`/proc/${child!.pid}/task/${child!.pid}/children`, 'utf8').catch(() => '');
      return [child!.pid!, ...children.split(' ').filter(Boolean).map(Number)];
    },
    takeRequests: async () => {
      const text = await readFile(home.log, 'utf8').catch(() => '');
      await writeFile(home.log, '');
      return p.countRequests(text);
    },
    wipe: async () => {
      if (running()) throw new Error('wipe: the cache is running');
      await rm(home.data, { recursive: true, force: true });
    },
  };
}

/** `4× GET blobs 200, …` from the keys found in a log. */
export function countKeys(keys: Iterable<string>): string {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n}× ${k}`).join(', ');
}

/**
 * distribution's proxy mode. `originHost` is the link's `127.0.0.1:<port>`; `originCaPath` the
 * origin's certificate, which the cache trusts through Go's SSL_CERT_FILE (distribution has no CA
 * setting for its remote). Its access log goes to stderr (cache.log), which `takeRequests` reads.
 */
export async function createPullThroughCache(parent: string, originHost: string, originCaPath: string): Promise<PullThroughCache> {
  const home = await cacheHome(parent, 'cache-');
  home.log = join(home.dir, 'cache.log');
  const config = join(home.dir, 'config.yml');
  await writeFile(config, `version: 0.1\nlog: {level: info, formatter: json, accesslog: {disabled: false}}\n`
    + `storage:\n  filesystem: {rootdirectory: ${home.data}}\n  delete: {enabled: true}\n`
    + `http:\n  addr: ${home.host}\n  tls: {certificate: ${home.cert.certPath}, key: ${home.cert.keyPath}}\n`
    + `proxy:\n  remoteurl: https://${originHost}\n`);
  return cacheProcess({
    engine: 'distribution', home, argv: [REGISTRY_BIN, 'serve', config], env: { ...process.env, SSL_CERT_FILE: originCaPath }, dirs: [],
    countRequests: (text) => {
      const keys = [...text.matchAll(/"(GET|HEAD) \/v2\/\S*?\/(blobs|manifests)\/\S+ HTTP\/[\d.]+" (\d+)/g)].map((m) => `${m[1]} ${m[2]} ${m[3]}`);
      const ranged = (text.match(/Range/g) ?? []).length;
      return countKeys(keys) + (ranged ? `; ${ranged} log lines name a Range` : '');
    },
  });
}
