/**
 * The pull-through cache: Debian's `docker-registry` (distribution) with `proxy: remoteurl:`
 * pointing at the origin through the throttled link, TLS with its own throwaway certificate, on
 * 127.0.0.1 and a port it keeps across restarts (agents name it in their mirror settings).
 * `kill()` is a SIGKILL — a cache that dies, not one that shuts down politely; `start()` again
 * serves what it had stored; `wipe()` empties the store for a cold run.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { createTestCertificate, freePort, REGISTRY_BIN, type TestCertificate } from '../../../test/helpers/registry.ts';
import { deferCleanup, sleep } from '../common.ts';

export interface PullThroughCache {
  /** `127.0.0.1:<port>` */
  host: string;
  cert: TestCertificate;
  running(): boolean;
  /** The running process's id (for its CPU time). */
  pid(): number | undefined;
  start(): Promise<void>;
  kill(): Promise<void>;
  /** Removes everything the cache stored (it must be stopped). */
  wipe(): Promise<void>;
  /** Requests the cache answered since the last call, counted by method, kind and status. */
  takeRequests(): Promise<string>;
  /** Kills it and removes its files. */
  remove(): Promise<void>;
}

/**
 * `originHost` is the link's `127.0.0.1:<port>`; `originCaPath` the origin's certificate, which
 * the cache trusts through Go's SSL_CERT_FILE (distribution has no CA setting for its remote).
 */
export async function createPullThroughCache(parent: string, originHost: string, originCaPath: string): Promise<PullThroughCache> {
  const dir = await mkdtemp(join(parent, 'cache-'));
  const cert = await createTestCertificate(dir);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const data = join(dir, 'data');
  const config = join(dir, 'config.yml');
  await writeFile(config, `version: 0.1\nlog: {level: info, formatter: json, accesslog: {disabled: false}}\n`
    + `storage:\n  filesystem: {rootdirectory: ${data}}\n  delete: {enabled: true}\n`
    + `http:\n  addr: ${host}\n  tls: {certificate: ${cert.certPath}, key: ${cert.keyPath}}\n`
    + `proxy:\n  remoteurl: https://${originHost}\n`);
  const probe = new Agent({ connect: { ca: cert.cert } });
  let child: ChildProcess | undefined;
  let stderr = '';

  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (!child || !running()) return;
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  const start = async () => {
    await mkdir(data, { recursive: true });
    stderr = '';
    const log = await open(join(dir, 'cache.log'), 'a');
    child = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', log.fd, 'pipe'], env: { ...process.env, SSL_CERT_FILE: originCaPath } });
    await log.close();
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-2000);
      void appendFile(join(dir, 'cache.log'), d);
    });
    for (let i = 0; i < 100 && running(); i++) {
      const ok = await request(`https://${host}/v2/`, { dispatcher: probe }).then(async (r) => { await r.body.dump(); return true; }, () => false);
      if (ok) return;
      await sleep(100);
    }
    await kill();
    throw new Error(`the pull-through cache did not start: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  };
  const remove = deferCleanup(async () => {
    await kill();
    await probe.close();
    await rm(dir, { recursive: true, force: true });
    // The agents' registry_mirrors ca= put the cache's CA under its host:port, which is ours alone.
    await rm(join('/etc/containers/certs.d', host), { recursive: true, force: true });
  });
  return {
    host, cert, running, start, kill, remove,
    pid: () => (running() ? child!.pid : undefined),
    takeRequests: async () => {
      const text = await readFile(join(dir, 'cache.log'), 'utf8').catch(() => '');
      await writeFile(join(dir, 'cache.log'), '');
      const counts = new Map<string, number>();
      for (const m of text.matchAll(/"(GET|HEAD) \/v2\/\S*?\/(blobs|manifests)\/\S+ HTTP\/[\d.]+" (\d+)/g)) {
        const key = `${m[1]} ${m[2]} ${m[3]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      const ranged = (text.match(/Range/g) ?? []).length;
      return [...counts].map(([k, n]) => `${n}× ${k}`).join(', ') + (ranged ? `; ${ranged} log lines name a Range` : '');
    },
    wipe: async () => {
      if (running()) throw new Error('wipe: the cache is running');
      await rm(data, { recursive: true, force: true });
    },
  };
}
