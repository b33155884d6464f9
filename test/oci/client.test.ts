import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { faultClient, imageManifest, serveBlob, serveManifest, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';
import { parseReference, type RegistriesConfig } from '../../src/oci/index.ts';
import { loadHostTls } from '../../src/oci/dispatcher.ts';
import { createLogger } from '../../src/log/index.ts';

let primary: FaultRegistry;
let mirror: FaultRegistry;
before(async () => {
  primary = await startFaultRegistry();
  mirror = await startFaultRegistry();
});
after(async () => {
  await primary.close();
  await mirror.close();
});

const D = `sha256:${'3'.repeat(64)}`;
const body = imageManifest({ digest: D, size: 2, mediaType: 'application/vnd.oci.empty.v1+json' }, [{ digest: D, size: 1 }]);
const conf = (): RegistriesConfig => ({
  registries: [
    { prefix: primary.host, location: primary.host, insecure: true, blocked: false, mirrorByDigestOnly: false, mirrors: [{ location: `${mirror.host}/cache`, insecure: true, pullFromMirror: 'all' }] },
  ],
});

test('mirrors are tried first; a failing mirror falls back to the primary; explicit credentials never go to the mirror', async () => {
  const digest = serveManifest(primary, 'team/app', 'v1', body);
  const { client } = faultClient([primary, mirror], { registries: conf() });
  const resolved = await client.resolve(`oci://${primary.host}/team/app:v1`, { credentials: { type: 'basic', username: 'u', password: 'p' } });
  assert.equal(resolved.reference.digest, digest);
  assert.equal(resolved.source.mirror, false);
  const mirrorHits = mirror.requestsTo('/v2/cache/team/app/');
  assert.ok(mirrorHits.length > 0);
  assert.ok(mirrorHits.every((r) => r.headers.authorization === undefined));
  serveManifest(mirror, 'cache/team/app', 'v1', body);
  const viaMirror = await client.resolve(`oci://${primary.host}/team/app:v1`);
  assert.deepEqual([viaMirror.source.registry, viaMirror.source.repository, viaMirror.source.mirror], [mirror.host, 'cache/team/app', true]);
  await client.close();
});

test('the primary error is reported with the mirror errors in details', async () => {
  const { client } = faultClient([primary, mirror], { registries: conf() });
  await assert.rejects(client.resolve(`oci://${primary.host}/none/x:v1`), (e: { code?: string; details?: Record<string, unknown> }) =>
    e.code === 'REGISTRY_NOT_FOUND' && Array.isArray(e.details?.['mirror_errors']) && (e.details['mirror_errors'] as unknown[]).length === 1);
  await client.close();
});

test('an idle body times out and the download resumes from where it stopped', async () => {
  const bytes = randomBytes(100_000);
  const digest = sha256(bytes);
  primary.route('GET', `/v2/idle/x/blobs/${digest}`, (req, res, hit) => {
    if (hit === 1) {
      res.writeHead(200, { 'content-length': String(bytes.length) });
      res.write(bytes.subarray(0, 40_000)); // then stall
      return;
    }
    assert.equal(req.headers.range, `bytes=40000-${bytes.length - 1}`);
    res.writeHead(206, { 'content-range': `bytes 40000-${bytes.length - 1}/${bytes.length}` }).end(bytes.subarray(40_000));
  });
  const { client } = faultClient(primary, { timeouts: { bodyIdleMs: 300 } });
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const source = { reference: parseReference(`oci://${primary.host}/idle/x:v1`), source: { registry: primary.host, repository: 'idle/x', insecure: true, mirror: false } };
  await client.downloadBlob(source, { mediaType: 'application/octet-stream', digest, size: bytes.length }, out);
  assert.ok(Buffer.concat(chunks).equals(bytes));
  await client.close();
});

test('HTTP(S)_PROXY from the injected environment routes requests through the proxy; NO_PROXY bypasses it', async () => {
  const seen: string[] = [];
  const proxy: Server = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  // undici tunnels through the proxy with CONNECT; record the target and splice the sockets.
  proxy.on('connect', (req, socket: Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  try {
    serveManifest(primary, 'proxied/x', 'v1', body);
    const viaProxy = faultClient(primary, { env: { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, NO_PROXY: '' }, retry: { maxAttempts: 1 } });
    await viaProxy.client.resolve(`oci://${primary.host}/proxied/x:v1`);
    assert.ok(seen.includes(`CONNECT ${primary.host}`) || seen.some((u) => u.startsWith(`http://${primary.host}/v2/`)), seen.join(','));
    await viaProxy.client.close();
    seen.length = 0;
    const bypass = faultClient(primary, { env: { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, NO_PROXY: '127.0.0.1' } });
    await bypass.client.resolve(`oci://${primary.host}/proxied/x:v1`);
    assert.deepEqual(seen, []);
    await bypass.client.close();
  } finally {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
});

test('certs.d: the first directory with an entry for host:port wins; *.crt are CAs, *.cert needs its *.key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'certsd-'));
  try {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'a', 'reg:5000'), { recursive: true });
    await mkdir(join(dir, 'b', 'reg:5000'), { recursive: true });
    await writeFile(join(dir, 'a', 'reg:5000', 'ca.crt'), 'CA-1');
    await writeFile(join(dir, 'a', 'reg:5000', 'extra.crt'), 'CA-2');
    await writeFile(join(dir, 'a', 'reg:5000', 'client.cert'), 'CERT');
    await writeFile(join(dir, 'a', 'reg:5000', 'client.key'), 'KEY');
    await writeFile(join(dir, 'b', 'reg:5000', 'ca.crt'), 'CA-B');
    const tls = await loadHostTls([join(dir, 'missing'), join(dir, 'a'), join(dir, 'b')], 'reg:5000');
    assert.deepEqual([tls.ca, tls.cert, tls.key], [['CA-1', 'CA-2'], 'CERT', 'KEY']);
    assert.deepEqual((await loadHostTls([join(dir, 'a')], 'other:1')).ca, []);
    await mkdir(join(dir, 'c', 'h'), { recursive: true });
    await writeFile(join(dir, 'c', 'h', 'lonely.cert'), 'CERT');
    await assert.rejects(loadHostTls([join(dir, 'c')], 'h'), (e: { code?: string }) => e.code === 'REGISTRY_CONFIG_INVALID');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('registry warnings are logged once; blob bytes are served from the resolved source', async () => {
  const bytes = randomBytes(64);
  const digest = serveBlob(primary, 'warn/x', bytes);
  primary.route('GET', `/v2/warn/x/blobs/${digest}`, (_q, res) => res.writeHead(200, { warning: '299 - "deprecated repository"' }).end(bytes));
  const lines: string[] = [];
  const log = createLogger({ level: 'warn', stream: { write: (line: string) => { lines.push(line); } } });
  const { client } = faultClient(primary, { log });
  const source = { reference: parseReference(`oci://${primary.host}/warn/x:v1`), source: { registry: primary.host, repository: 'warn/x', insecure: true, mirror: false } };
  for (let i = 0; i < 2; i++) {
    const out = new PassThrough();
    out.resume();
    await client.downloadBlob(source, { mediaType: 'application/octet-stream', digest, size: 64 }, out);
  }
  await client.close();
  assert.equal(lines.filter((l) => l.includes('deprecated repository')).length, 1);
});
