/**
 * writeArtifactToTarget from a local HTTPS server (port 0, throwaway CA): checksum verified
 * while streaming, wrong checksum → error and the written target wiped, URLs tried in order,
 * qcow2 converted with qemu-img, qcow2 without temporary space → a clear error, an image larger
 * than the disk refused before writing. Loop-device cases need root.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createExecaRunner } from '../../src/exec/index.ts';
import { writeArtifactToTarget } from '../../src/image/index.ts';
import { AgentError } from '../../src/errors.ts';
import { hasNoSignature, makeGptImage, readHead, startHttpsServer, suiteLoopDevice, tempDir, toolMissing, toQcow2, type HttpsServer } from './helpers.ts';

const skip = toolMissing('openssl', 'qemu-img', 'sgdisk', 'zstd');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

function code(expected: string) {
  return (e: unknown) => {
    assert.ok(e instanceof AgentError, String(e));
    assert.equal(e.code, expected, `${e.code}: ${e.message}`);
    return true;
  };
}

describe('http(s) images', { skip }, () => {
  const runner = createExecaRunner();
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let server: HttpsServer;
  let image: Buffer;
  let qcow2: Buffer;
  const http = () => ({ ca: server.cert.cert, retries: 0 });

  before(async () => {
    tmp = await tempDir('image-https-');
    server = await startHttpsServer(tmp.dir);
    image = await makeGptImage(tmp.dir, 8);
    qcow2 = await toQcow2(tmp.dir, image);
    server.serve('/disk.raw', image);
    server.serve('/disk.qcow2', qcow2);
    server.serve('/secret.raw', image, { requireAuthorization: 'Bearer s3cr3t' });
    server.route('/broken', (_req, res) => res.writeHead(500).end('oops'));
  });
  after(async () => {
    await server?.close();
    await tmp?.cleanup();
  });

  test('checksum verified while streaming; the first failing URL is skipped', async () => {
    const out = join(tmp.dir, 'ok.raw');
    const result = await writeArtifactToTarget({
      source: [`${server.url}/missing`, `${server.url}/secret.raw?sig=abc`], target: out, runner, http: http(),
      headers: { authorization: 'Bearer s3cr3t' },
      checksum: { algorithm: 'sha512', value: createHash('sha512').update(image).digest('hex') },
    });
    assert.equal(sha256(await readFile(out)), sha256(image));
    assert.equal(result.checksumVerified, true);
    assert.match(result.digest, /^sha512:/);
    assert.equal(result.source, `${server.url}/secret.raw?…`);
    assert.equal(server.requests.filter((r) => r.path === '/secret.raw').at(-1)?.authorization, 'Bearer s3cr3t');
  });

  test('all URLs failing: IMAGE_DOWNLOAD_FAILED listing each, nothing created', async () => {
    const out = join(tmp.dir, 'none.raw');
    await assert.rejects(writeArtifactToTarget({ source: [`${server.url}/missing`, `${server.url}/broken`], target: out, runner, http: http() }), (e: unknown) => {
      code('IMAGE_DOWNLOAD_FAILED')(e);
      const attempts = (e as AgentError).details.attempts as { url: string; message: string }[];
      assert.equal(attempts.length, 2);
      assert.match(attempts[0]!.message, /404/);
      assert.match(attempts[1]!.message, /500/);
      return true;
    });
    assert.equal(existsSync(out), false);
  });

  test('wrong checksum: IMAGE_CHECKSUM_MISMATCH and the partial file is deleted', async () => {
    const out = join(tmp.dir, 'bad.raw');
    await assert.rejects(writeArtifactToTarget({
      source: `${server.url}/disk.raw`, target: out, runner, http: http(),
      checksum: { algorithm: 'sha256', value: 'f'.repeat(64) },
    }), (e: unknown) => {
      code('IMAGE_CHECKSUM_MISMATCH')(e);
      assert.equal((e as AgentError).details.cleanup, 'deleted');
      assert.equal((e as AgentError).details.actual, sha256(image));
      return true;
    });
    assert.equal(existsSync(out), false);
  });

  test('qcow2 is converted to raw with qemu-img through a temporary copy', async () => {
    const out = join(tmp.dir, 'from-qcow2.raw');
    const temp = join(tmp.dir, 'qtemp');
    await mkdir(temp);
    const result = await writeArtifactToTarget({ source: `${server.url}/disk.qcow2`, target: out, runner, http: http(), tempDir: temp, diskFormat: 'qcow2' });
    assert.equal(result.diskFormat, 'qcow2');
    assert.equal(result.bytes, image.length);
    assert.equal(result.downloadedBytes, qcow2.length);
    assert.equal(typeof result.phases.convert, 'number');
    assert.equal(sha256(await readFile(out)), sha256(image));
    assert.deepEqual(await readdir(temp), [], 'temporary copy removed');
  });

  test('qcow2 with a checksum: verified once, before the conversion, and reported', async () => {
    const out = join(tmp.dir, 'from-qcow2-checked.raw');
    const checksum = { algorithm: 'sha256', value: sha256(qcow2) };
    const result = await writeArtifactToTarget({ source: `${server.url}/disk.qcow2`, target: out, runner, http: http(), tempDir: tmp.dir, checksum });
    assert.equal(result.digest, `sha256:${sha256(qcow2)}`);
    assert.equal(result.checksumVerified, true);
    assert.equal(sha256(await readFile(out)), sha256(image));
    await assert.rejects(writeArtifactToTarget({
      source: `${server.url}/disk.qcow2`, target: join(tmp.dir, 'bad-qcow2.raw'), runner, http: http(), tempDir: tmp.dir,
      checksum: { algorithm: 'sha256', value: 'e'.repeat(64) },
    }), (e: unknown) => {
      code('IMAGE_CHECKSUM_MISMATCH')(e);
      assert.equal((e as AgentError).details.cleanup, 'untouched', 'refused before qemu-img wrote the target');
      return true;
    });
    assert.equal(existsSync(join(tmp.dir, 'bad-qcow2.raw')), false);
  });

  test('qcow2 without room for the temporary copy: IMAGE_TEMP_NO_SPACE naming the numbers', async () => {
    const out = join(tmp.dir, 'nospace.raw');
    await assert.rejects(writeArtifactToTarget({
      source: `${server.url}/disk.qcow2`, target: out, runner, http: http(), tempDir: tmp.dir,
      freeSpace: async () => 64 * MiB + 1000,
    }), (e: unknown) => {
      code('IMAGE_TEMP_NO_SPACE')(e);
      const d = (e as AgentError).details;
      assert.equal(d.temp_dir, tmp.dir);
      assert.equal(d.free_bytes, 64 * MiB + 1000);
      assert.equal(d.needed_bytes, qcow2.length);
      assert.match((e as AgentError).message, /needs a temporary copy of \d+ MiB in .* but only \d+ MiB is free/);
      assert.equal(d.cleanup, 'untouched');
      return true;
    });
    assert.equal(existsSync(out), false);
  });

  test('a file target is written sparse: zero blocks stay holes, content and size exact', async () => {
    const sparse = Buffer.concat([randomBytes(MiB + 3), Buffer.alloc(8 * MiB), randomBytes(5000)]);
    server.serve('/sparse.raw', sparse);
    const out = join(tmp.dir, 'sparse.raw');
    const result = await writeArtifactToTarget({ source: `${server.url}/sparse.raw`, target: out, runner, http: http() });
    assert.equal(result.bytes, sparse.length);
    const info = await stat(out);
    assert.equal(info.size, sparse.length);
    assert.equal(sha256(await readFile(out)), sha256(sparse));
    assert.ok(info.blocks * 512 < 4 * MiB, `allocated ${info.blocks * 512} bytes`);
  });

  test('xz is refused as unsupported', async () => {
    server.serve('/disk.xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3, 4]));
    await assert.rejects(writeArtifactToTarget({ source: `${server.url}/disk.xz`, target: join(tmp.dir, 'xz.raw'), runner, http: http() }), code('IMAGE_FORMAT_UNSUPPORTED'));
  });

  test('cancellation stops the download with CANCELLED', async () => {
    server.route('/slow', (_req, res) => {
      res.writeHead(200, { 'content-length': String(64 * MiB) });
      res.write(Buffer.alloc(MiB));
    });
    const ac = new AbortController();
    const out = join(tmp.dir, 'cancel.raw');
    const pending = writeArtifactToTarget({ source: `${server.url}/slow`, target: out, runner, http: http(), signal: ac.signal, onProgress: (p) => { if (p.bytesDownloaded > 0) ac.abort(); } });
    await assert.rejects(pending, code('CANCELLED'));
    assert.equal(existsSync(out), false);
  });

  describe('to a real loop device', () => {
    const loop = suiteLoopDevice(() => tmp.dir, 32);

    test('wrong checksum after writing: the disk is wiped (no signatures, zeroed GPT)', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      await assert.rejects(writeArtifactToTarget({
        source: `${server.url}/disk.raw`, target: loop.device, runner, http: http(),
        checksum: { algorithm: 'sha256', value: '0'.repeat(64) },
      }), (e: unknown) => {
        code('IMAGE_CHECKSUM_MISMATCH')(e);
        assert.equal((e as AgentError).details.cleanup, 'wiped');
        assert.equal((e as AgentError).details.bytes_written, image.length);
        return true;
      });
      assert.ok(hasNoSignature(loop.device), 'blkid still finds a signature');
      assert.ok((await readHead(loop.device, 33 * 512)).every((b) => b === 0), 'primary GPT area not zeroed');
    });

    test('qcow2 to the device: the raw content lands on it', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      const result = await writeArtifactToTarget({ source: `${server.url}/disk.qcow2`, target: loop.device, runner, http: http(), tempDir: tmp.dir });
      assert.equal(result.diskFormat, 'qcow2');
      assert.equal(sha256(await readHead(loop.device, image.length)), sha256(image));
    });

    test('an image larger than the disk is refused before writing (IMAGE_TOO_LARGE)', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      const before = await readHead(loop.device, 4096);
      server.route('/huge', (_req, res) => {
        res.writeHead(200, { 'content-length': String(40 * MiB) });
        res.end(Buffer.alloc(40 * MiB, 1));
      });
      await assert.rejects(writeArtifactToTarget({ source: `${server.url}/huge`, target: loop.device, runner, http: http() }), (e: unknown) => {
        code('IMAGE_TOO_LARGE')(e);
        assert.equal((e as AgentError).details.target_bytes, 32 * MiB);
        assert.equal((e as AgentError).details.cleanup, 'untouched');
        return true;
      });
      assert.deepEqual(await readHead(loop.device, 4096), before);
      assert.equal((await stat(loop.file)).size, 32 * MiB);
    });

    test('a compressed image that turns out larger than the disk fails while writing, disk wiped', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      server.serve('/huge.gz', gzipSync(Buffer.concat([image, Buffer.alloc(40 * MiB, 1)])));
      await assert.rejects(writeArtifactToTarget({ source: `${server.url}/huge.gz`, target: loop.device, runner, http: http() }), (e: unknown) => {
        code('IMAGE_TOO_LARGE')(e);
        assert.equal((e as AgentError).details.size_kind, 'at least');
        assert.equal((e as AgentError).details.cleanup, 'wiped');
        return true;
      });
      assert.ok(hasNoSignature(loop.device));
    });
  });
});
