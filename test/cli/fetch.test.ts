/**
 * `bootc-agent fetch` as a user runs it: the real entry point (src/main.ts through tsx) in a
 * child process, against a real registry (TLS + htpasswd) and a local HTTPS server. Checks the
 * written bytes, plain-line progress without a TTY, stdout results, and the exit codes.
 * The children run concurrently: each one pays the TypeScript start-up cost.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { runFetchCli } from '../../src/cli/index.ts';
import { pushArtifact, registryUnavailable, startRegistry, zstdCompress, type TestRegistry } from '../helpers/registry.ts';
import { startHttpsServer, tempDir, toolMissing, type HttpsServer } from '../image/helpers.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Run { code: number | null; stdout: string; stderr: string }

// Runs `bootc-agent fetch ARGS` with a clean environment plus `env`; kills it after 60 s.
function fetchCli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'fetch', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('bootc-agent fetch', { concurrency: true }, () => {
  test('--help: usage and exit codes on stdout, exit 0', async () => {
    const r = await fetchCli(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: bootc-agent fetch SOURCE --output FILE\|DEVICE/);
    assert.match(r.stdout, /Exit codes\n {2}0 {2}written and verified/);
  });

  test('bad usage exits 2 with a message on stderr', async () => {
    const cases: [string[], RegExp][] = [
      [[], /missing SOURCE/],
      [['https://example.invalid/x'], /missing --output/],
      [['ftp://example.invalid/x', '-o', '/tmp/x'], /SOURCE must start with oci:\/\/, https:\/\/ or http:\/\//],
      [['https://example.invalid/x', '-o', '/tmp/x', '--bogus'], /Unknown option '--bogus'/],
      [['oci://registry.local/x:1', '-o', '/tmp/x', '--platform', 'amd64'], /--platform must be OS\/ARCH/],
      [['oci://registry.local/x:1', '-o', '/tmp/x', '--creds-env', 'BOOTC_TEST_UNSET_VAR'], /BOOTC_TEST_UNSET_VAR \(from --creds-env\) is empty or not set/],
      [['https://example.invalid/x', '-o', '/tmp/x', '--checksum', 'sha256:abc'], /not 64 hex digits/],
      [['oci://UPPER/Case:1', '-o', '/tmp/x'], /\[OCI_REFERENCE_INVALID\]/],
    ];
    const results = await Promise.all(cases.map(([args]) => fetchCli(args)));
    results.forEach((r, i) => {
      assert.equal(r.code, 2, `${JSON.stringify(cases[i]![0])}: ${r.stderr}`);
      assert.match(r.stderr, cases[i]![1]);
      assert.equal(r.stdout, '');
    });
  });

  describe('against a real registry and an HTTPS server', { skip: registryUnavailable() ?? toolMissing('zstd', 'openssl'), concurrency: true }, () => {
    let reg: TestRegistry;
    let server: HttpsServer;
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    let image: Buffer;
    let authfile: string;

    before(async () => {
      tmp = await tempDir('cli-fetch-');
      reg = await startRegistry({ auth: 'basic' });
      server = await startHttpsServer(tmp.dir);
      image = randomBytes(6 * 1024 * 1024 + 5);
      await pushArtifact(reg, 'disks/cli', 'v1', { bytes: await zstdCompress(image), title: 'disk.raw.zst', mediaType: 'application/zstd' });
      server.serve('/disk.raw', image);
      authfile = join(tmp.dir, 'auth.json');
      await writeFile(authfile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }));
    });
    after(async () => {
      await server?.close();
      await reg?.stop();
      await tmp?.cleanup();
    });

    test('oci:// with --authfile and --cert-dir: bytes written, plain progress lines, summary on stdout', async () => {
      const out = join(tmp.dir, 'oci.raw');
      const r = await fetchCli([`oci://${reg.host}/disks/cli:v1`, '--output', out, '--platform', 'linux/amd64', '--authfile', authfile, '--cert-dir', reg.certsDir, '--progress-interval', '0']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(await readFile(out)), sha256(image));
      assert.ok(!r.stderr.includes('\r'), 'no carriage returns without a TTY');
      assert.match(r.stderr, /^fetching oci:\/\/.* → .*oci\.raw\n/);
      assert.match(r.stderr, /^downloaded [\d.]+\/[\d.]+ MiB \(\d+%\), written [\d.]+ MiB, [\d.]+ MiB\/s$/m);
      assert.match(r.stdout, new RegExp(`^wrote ${image.length} bytes \\(raw, zstd\\) to ${out} from oci://`));
      assert.match(r.stdout, /sha256:[0-9a-f]{64}/);
    });

    test('oci:// with --creds-env (no secret in argv) and --json', async () => {
      const out = join(tmp.dir, 'oci-env.raw');
      const r = await fetchCli([`oci://${reg.host}/disks/cli:v1`, '-o', out, '--platform', 'linux/amd64', '--creds-env', 'REG_CREDS', '--cert-dir', reg.certsDir, '--json'], { REG_CREDS: `${reg.username}:${reg.password}` });
      assert.equal(r.code, 0, r.stderr);
      const result = JSON.parse(r.stdout) as { bytes: number; compression: string; phases: Record<string, number> };
      assert.equal(result.bytes, image.length);
      assert.equal(result.compression, 'zstd');
      assert.equal(typeof result.phases.network, 'number');
      assert.equal(sha256(await readFile(out)), sha256(image));
    });

    test('oci:// with wrong credentials exits 3', async () => {
      const r = await fetchCli([`oci://${reg.host}/disks/cli:v1`, '-o', join(tmp.dir, 'denied.raw'), '--platform', 'linux/amd64', '--creds-env', 'REG_CREDS', '--cert-dir', reg.certsDir], { REG_CREDS: 'testuser:wrong' });
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /\[REGISTRY_AUTH_FAILED\]/);
    });

    test('https:// with --insecure and the right --checksum', async () => {
      const out = join(tmp.dir, 'https.raw');
      const r = await fetchCli([`${server.url}/disk.raw`, '-o', out, '--insecure', '--checksum', `sha256:${sha256(image)}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\(checksum verified\)/);
      assert.equal(sha256(await readFile(out)), sha256(image));
    });

    test('https:// with a wrong --checksum exits 4 and leaves no file', async () => {
      const out = join(tmp.dir, 'wrong.raw');
      const r = await fetchCli([`${server.url}/disk.raw`, '-o', out, '--ca-file', server.cert.certPath, '--checksum', `sha256:${'0'.repeat(64)}`]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /\[IMAGE_CHECKSUM_MISMATCH\]/);
      assert.equal(existsSync(out), false);
    });

    test('on a TTY the progress line is rewritten in place (in-process, fake TTY)', async () => {
      let stderr = '';
      let stdout = '';
      const tty = Object.assign(new Writable({ write(c: Buffer, _e, cb) { stderr += c.toString('utf8'); cb(); } }), { isTTY: true, columns: 80 });
      const out = new Writable({ write(c: Buffer, _e, cb) { stdout += c.toString('utf8'); cb(); } });
      const code = await runFetchCli([`${server.url}/disk.raw`, '-o', join(tmp.dir, 'tty.raw'), '--ca-file', server.cert.certPath], { stdout: out, stderr: tty, env: {} });
      assert.equal(code, 0, stderr);
      assert.match(stderr, /\r\x1b\[Kdownloaded [\d.]+\/[\d.]+ MiB \(100%\)/);
      assert.ok(stderr.endsWith('\n'));
      assert.match(stdout, /^wrote /);
    });

    test('SIGINT during the download exits 130 and deletes the partial file', async () => {
      server.route('/stall', (_req, res) => {
        res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) });
        res.write(Buffer.alloc(1024 * 1024, 7)); // then nothing: the client waits
      });
      const out = join(tmp.dir, 'interrupted.raw');
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'fetch', `${server.url}/stall`, '-o', out, '--insecure', '--progress-interval', '0'], {
        cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      try {
        await new Promise<void>((resolve, reject) => {
          child.stderr.on('data', (c: Buffer) => {
            stderr += c.toString('utf8');
            if (/^downloaded /m.test(stderr)) resolve();
          });
          child.once('close', () => reject(new Error(`exited early: ${stderr}`)));
        });
        child.kill('SIGINT');
        assert.equal(await closed, 130, stderr);
        assert.match(stderr, /\[CANCELLED\]/);
        assert.equal(existsSync(out), false);
      } finally {
        clearTimeout(timer);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    });

    test('https:// 404 exits 3; an untrusted certificate exits 3', async () => {
      const [missing, untrusted] = await Promise.all([
        fetchCli([`${server.url}/missing`, '-o', join(tmp.dir, 'missing.raw'), '--insecure']),
        fetchCli([`${server.url}/disk.raw`, '-o', join(tmp.dir, 'untrusted.raw')]),
      ]);
      assert.equal(missing.code, 3, missing.stderr);
      assert.match(missing.stderr, /Received status code 404/);
      assert.equal(untrusted.code, 3, untrusted.stderr);
      assert.match(untrusted.stderr, /\[IMAGE_DOWNLOAD_FAILED\]/);
    });
  });
});
