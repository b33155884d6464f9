/**
 * A TLS + htpasswd Debian `docker-registry` on host loopback whose certificate also names the
 * address the QEMU guest reaches it at (user networking's guestfwd, 10.0.2.100 by default).
 * test/helpers/registry.ts makes certificates for 127.0.0.1/localhost only, which a guest
 * cannot use; everything else here follows that helper. `stop()` kills only its own process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { freePort } from '../../test/helpers/registry.ts';

const run = promisify(execFile);

export interface GuestRegistry {
  /** 127.0.0.1:PORT, as seen from the host. */
  hostAddress: string;
  /** GUEST_IP:PORT, as seen from the guest (same port, through guestfwd). */
  guestAddress: string;
  port: number;
  username: string;
  password: string;
  caPem: string;
  caPath: string;
  /** A directory with ca.crt, for skopeo's --dest-cert-dir. */
  certDir: string;
  /** skopeo copy containers-storage:<image> → docker://127.0.0.1:PORT/<repo>. */
  pushFromPodman(image: string, repo: string): Promise<void>;
  stop(): Promise<void>;
}


export async function startGuestRegistry(options: { guestIp?: string; username?: string; password?: string } = {}): Promise<GuestRegistry> {
  const guestIp = options.guestIp ?? '10.0.2.100';
  const username = options.username ?? 'qemu';
  const password = options.password ?? 'qemu-pass';
  const dir = await mkdtemp(join(tmpdir(), 'qemu-registry-'));
  const certDir = join(dir, 'certs');
  await mkdir(certDir);
  const certPath = join(certDir, 'ca.crt');
  const keyPath = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-keyout', keyPath, '-out', certPath,
    '-subj', '/CN=bootc-agent qemu test registry', '-addext', `subjectAltName=IP:${guestIp},IP:127.0.0.1,DNS:localhost`,
    '-addext', 'basicConstraints=critical,CA:TRUE']);
  const caPem = await readFile(certPath, 'utf8');
  const { stdout: htpasswd } = await run('htpasswd', ['-Bbn', username, password]);
  await writeFile(join(dir, 'htpasswd'), htpasswd);
  const dispatcher = new Agent({ connect: { ca: caPem } });
  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !port; attempt++) {
    const p = await freePort();
    await writeFile(join(dir, 'config.yml'), `version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n`
      + `storage:\n  filesystem: {rootdirectory: ${join(dir, 'data')}}\n  delete: {enabled: true}\n`
      + `http:\n  addr: 127.0.0.1:${p}\n  tls: {certificate: ${certPath}, key: ${keyPath}}\n`
      + `auth:\n  htpasswd: {realm: basic-realm, path: ${join(dir, 'htpasswd')}}\n`);
    child = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.resume();
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      try {
        const res = await request(`https://127.0.0.1:${p}/v2/`, { dispatcher });
        await res.body.dump();
        port = p;
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (!port) child.kill('SIGKILL');
  }
  if (!port || !child) throw new Error('docker-registry did not start');
  const proc = child;
  return {
    hostAddress: `127.0.0.1:${port}`,
    guestAddress: `${guestIp}:${port}`,
    port, username, password, caPem, caPath: certPath, certDir,
    async pushFromPodman(image, repo) {
      await run('skopeo', ['copy', '--quiet', '--dest-cert-dir', certDir, '--dest-creds', `${username}:${password}`,
        `containers-storage:${image}`, `docker://127.0.0.1:${port}/${repo}`], { maxBuffer: 16 * 1024 * 1024 });
    },
    async stop() {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await new Promise((resolve) => proc.once('exit', resolve));
      await dispatcher.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
