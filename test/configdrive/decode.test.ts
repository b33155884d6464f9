import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { loadConfigDrive } from '../../src/configdrive/index.ts';
import { isAgentError } from '../../src/errors.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createTestCertificate } from '../helpers/registry.ts';
import { buildFat, buildIso, hasCommand, tempDir } from './fixtures.ts';

const MiB = 1024 * 1024;
const log = createSilentLogger();
const skipNoTools = hasCommand('genisoimage') && hasCommand('mkfs.vfat') && hasCommand('mcopy') ? false : 'needs genisoimage, mkfs.vfat and mcopy';

function errorWith(code: string, pattern?: RegExp) {
  return (err: unknown) => {
    assert.ok(isAgentError(err), `expected an AgentError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

async function serve(t: TestContext, handler: Parameters<typeof createServer>[1], tls?: { cert: string; key: string }): Promise<string> {
  const server: Server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

// A multi-member gzip of `members` × 16 MiB of zeros (gunzip reads members back to back).
function gzipBomb(members: number): Buffer {
  const member = gzipSync(Buffer.alloc(16 * MiB), { level: 9 });
  return Buffer.concat(Array.from({ length: members }, () => member));
}

describe('loadConfigDrive', { skip: skipNoTools }, () => {
  it('decodes base64 of a gzipped ISO into a private temp file, removed by dispose()', async (t) => {
    const dir = tempDir(t);
    const iso = buildIso(dir);
    const drive = await loadConfigDrive(gzipSync(iso).toString('base64'), { log, tmpDir: dir });
    assert.equal(drive.format, 'iso9660');
    assert.equal(drive.label, 'config-2');
    assert.equal(drive.size, iso.length);
    assert.equal(drive.sizeMiB, Math.ceil(iso.length / MiB));
    assert.deepEqual(drive.encoding, { base64: true, gzip: true });
    assert.ok(readFileSync(drive.path).equals(iso));
    assert.equal(statSync(drive.dir).mode & 0o777, 0o700);
    assert.equal(statSync(drive.path).mode & 0o777, 0o600);
    await drive.dispose();
    assert.equal(existsSync(drive.dir), false);
  });

  it('decodes base64 of a raw ISO, with line breaks, and a FAT image labelled CONFIG-2', async (t) => {
    const dir = tempDir(t);
    const iso = buildIso(dir, { label: 'CONFIG-2' });
    const wrapped = iso.toString('base64').replace(/.{76}/g, '$&\n');
    const raw = await loadConfigDrive(wrapped, { log, tmpDir: dir });
    assert.deepEqual([raw.format, raw.label, raw.encoding.gzip], ['iso9660', 'CONFIG-2', false]);
    assert.ok(readFileSync(raw.path).equals(iso));
    await raw.dispose();
    const fat = await loadConfigDrive(gzipSync(buildFat(dir)).toString('base64'), { log, tmpDir: dir });
    assert.deepEqual([fat.format, fat.label, fat.blockSize], ['vfat', 'CONFIG-2', 512]);
    await fat.dispose();
  });

  it('downloads a URL: base64 body, raw gzip body (IPA fallback), redirects; query strings stay out of errors', async (t) => {
    const dir = tempDir(t);
    const iso = buildIso(dir);
    const bodies: Record<string, Buffer | string> = {
      '/b64': gzipSync(iso).toString('base64'),
      '/raw.gz': gzipSync(iso),
      '/raw.iso': iso,
    };
    const base = await serve(t, (req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/moved') {
        res.writeHead(302, { location: '/b64' }).end();
      } else if (bodies[path] !== undefined) {
        res.writeHead(200).end(bodies[path]);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no such object');
      }
    });
    for (const [path, base64, gzip] of [['/b64', true, true], ['/raw.gz', false, true], ['/raw.iso', false, false], ['/moved', true, true]] as const) {
      const drive = await loadConfigDrive(`${base}${path}?temp_url_sig=s3cret`, { log, tmpDir: dir });
      assert.deepEqual(drive.encoding, { base64, gzip }, path);
      assert.equal(drive.source, 'url');
      assert.ok(readFileSync(drive.path).equals(iso), path);
      await drive.dispose();
    }
    await assert.rejects(loadConfigDrive(`${base}/missing?temp_url_sig=s3cret`, { log, tmpDir: dir }), (err) => {
      errorWith('CONFIGDRIVE_DOWNLOAD_FAILED', /status code 404.*no such object/)(err);
      assert.ok(isAgentError(err) && err.details.status === 404);
      assert.doesNotMatch((err as Error).message, /s3cret/);
      return true;
    });
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('bootc-agent-configdrive-')), [], 'temp dirs removed');
  });

  it('fails a slow server after fetchTimeoutMs and an oversized body without reading it all', async (t) => {
    const dir = tempDir(t);
    let sent = 0;
    const base = await serve(t, (req, res) => {
      if (req.url === '/slow') return; // never answers
      res.writeHead(200);
      const chunk = Buffer.alloc(MiB, 0x41);
      const pump = (): void => {
        while (sent < 64 * MiB) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const started = performance.now();
    await assert.rejects(loadConfigDrive(`${base}/slow`, { log, tmpDir: dir, fetchTimeoutMs: 300 }), errorWith('CONFIGDRIVE_DOWNLOAD_FAILED', /no data for 0.3 s/));
    assert.ok(performance.now() - started < 5000);
    await assert.rejects(loadConfigDrive(`${base}/big`, { log, tmpDir: dir, maxBytes: 2 * MiB }), errorWith('CONFIGDRIVE_TOO_LARGE', /more than 4 MiB/));
    assert.ok(sent < 64 * MiB, `the server was stopped early (sent ${sent})`);
  });

  it('downloads over TLS with the given CA or insecure, refuses an unknown CA, and stops at the total deadline', async (t) => {
    const dir = tempDir(t);
    const iso = buildIso(dir);
    const cert = await createTestCertificate(dir);
    const base = await serve(t, (req, res) => {
      if (req.url !== '/trickle') return void res.writeHead(200).end(gzipSync(iso).toString('base64'));
      res.writeHead(200);
      const timer = setInterval(() => res.write('QUJD'), 50);
      res.on('close', () => clearInterval(timer));
    }, cert);
    await assert.rejects(loadConfigDrive(`${base}/cd`, { log, tmpDir: dir }), errorWith('CONFIGDRIVE_DOWNLOAD_FAILED', /self-signed certificate/));
    for (const tls of [{ ca: cert.cert }, { insecure: true }]) {
      const drive = await loadConfigDrive(`${base}/cd`, { log, tmpDir: dir, ...tls });
      assert.ok(readFileSync(drive.path).equals(iso));
      await drive.dispose();
    }
    const started = performance.now();
    await assert.rejects(loadConfigDrive(`${base}/trickle`, { log, tmpDir: dir, ca: cert.cert, fetchDeadlineMs: 300 }), errorWith('CONFIGDRIVE_DOWNLOAD_FAILED', /deadline of 0\.3 s/));
    assert.ok(performance.now() - started < 3000);
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('bootc-agent-configdrive-')), [], 'temp dirs removed');
  });

  it('stops a gzip bomb right after the decompressed limit', async (t) => {
    const dir = tempDir(t);
    const bomb = gzipBomb(64); // 1 GiB once inflated
    assert.ok(bomb.length < 2 * MiB);
    const started = performance.now();
    await assert.rejects(loadConfigDrive(bomb.toString('base64'), { log, tmpDir: dir }), (err) => {
      errorWith('CONFIGDRIVE_TOO_LARGE', /^Config drive size exceeds maximum limit of 64MiB: the image is more than 64 MiB once decompressed$/)(err);
      const seen = (err as { details: { size_bytes_at_least: number } }).details.size_bytes_at_least;
      assert.ok(seen > 64 * MiB && seen <= 64 * MiB + MiB, `stopped at ${seen}`);
      return true;
    });
    assert.ok(performance.now() - started < 3000, 'fails fast');
    assert.deepEqual(readdirSync(dir), [], 'nothing left behind');
  });

  it('refuses a raw image over 64 MiB, naming both sizes', async (t) => {
    const dir = tempDir(t);
    const iso = buildIso(dir, { files: { 'openstack/latest/meta_data.json': '{}', 'big.bin': Buffer.alloc(65 * MiB) } });
    await assert.rejects(
      loadConfigDrive(iso.toString('base64'), { log, tmpDir: dir }),
      errorWith('CONFIGDRIVE_TOO_LARGE', /^Config drive size exceeds maximum limit of 64MiB: the image is 66 MiB$/),
    );
    const small = buildIso(dir, { files: { 'openstack/latest/meta_data.json': '{}', 'x.bin': Buffer.alloc(2 * MiB, 1) } });
    await assert.rejects(loadConfigDrive(small.toString('base64'), { log, tmpDir: dir, maxBytes: MiB }), errorWith('CONFIGDRIVE_TOO_LARGE', /limit of 1MiB: the image is 3 MiB/));
  });

  it('rejects images that are not a config-2 ISO or FAT', async (t) => {
    const dir = tempDir(t);
    const b64 = (b: Buffer) => gzipSync(b).toString('base64');
    await assert.rejects(loadConfigDrive(b64(Buffer.alloc(40_000, 7)), { log, tmpDir: dir }), errorWith('CONFIGDRIVE_INVALID', /CD001.*32768/));
    await assert.rejects(loadConfigDrive(b64(buildIso(dir, { label: 'cidata' })), { log, tmpDir: dir }), errorWith('CONFIGDRIVE_INVALID', /volume id is "cidata", expected "config-2"/));
    await assert.rejects(loadConfigDrive(b64(buildFat(dir, { label: 'BOOT' })), { log, tmpDir: dir }), errorWith('CONFIGDRIVE_INVALID', /FAT label is "BOOT"/));
    const iso = buildIso(dir);
    await assert.rejects(loadConfigDrive(b64(iso.subarray(0, 40_000)), { log, tmpDir: dir }), errorWith('CONFIGDRIVE_INVALID', /truncated/));
    await assert.rejects(loadConfigDrive(b64(Buffer.alloc(0)), { log, tmpDir: dir }), errorWith('CONFIGDRIVE_INVALID', /empty/));
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('bootc-agent-configdrive-')), []);
  });

  it('rejects corrupt base64 and corrupt gzip with CONFIGDRIVE_INVALID', async (t) => {
    const dir = tempDir(t);
    const gz = gzipSync(buildIso(dir));
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['H4sI$AAA', /unexpected character "\$"/],
      ['H4sIAAA', /truncated/],
      ['H4sI=AAA', /padding/],
      ['QUJD\n\nRA==\nQUJD', /padding/],
      [gz.subarray(0, gz.length - 100).toString('base64'), /not valid gzip/],
      [Buffer.concat([gz.subarray(0, 10), Buffer.alloc(200, 0xff)]).toString('base64'), /not valid gzip/],
    ];
    for (const [value, pattern] of cases) {
      await assert.rejects(loadConfigDrive(value, { log, tmpDir: dir }), errorWith('CONFIGDRIVE_INVALID', pattern), JSON.stringify(value.slice(0, 20)));
    }
  });

  it('stops when its signal is aborted', async (t) => {
    const dir = tempDir(t);
    const controller = new AbortController();
    controller.abort(new Error('shutdown'));
    await assert.rejects(
      loadConfigDrive(gzipSync(buildIso(dir)).toString('base64'), { log, tmpDir: dir, signal: controller.signal }),
      errorWith('CANCELLED'),
    );
  });
});
