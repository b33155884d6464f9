import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { faultClient, sendTruncated, serveBlob, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';
import { createTestCertificate, writeCertsDir } from '../helpers/registry.ts';
import { parseReference, type BlobSource, type Descriptor } from '../../src/oci/index.ts';

let reg: FaultRegistry;
let cdn: FaultRegistry;
before(async () => {
  reg = await startFaultRegistry();
  cdn = await startFaultRegistry();
});
after(async () => {
  await reg.close();
  await cdn.close();
});

const code = (c: string) => (e: { code?: string }) => e.code === c;
const payload = randomBytes(256 * 1024 + 3);
const desc = (bytes: Buffer, digest = sha256(bytes), size = bytes.length): Descriptor => ({ mediaType: 'application/octet-stream', digest, size });
const at = (r: FaultRegistry, repo: string): BlobSource => ({ reference: parseReference(`oci://${r.host}/${repo}:x`), source: { registry: r.host, repository: repo, insecure: r.url.startsWith('http:'), mirror: false } });

function collector(): { stream: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write(c: Buffer, _e, cb) { chunks.push(c); cb(); } }), bytes: () => Buffer.concat(chunks) };
}

async function download(repo: string, d: Descriptor, extra: Parameters<ReturnType<typeof faultClient>['client']['downloadBlob']>[3] = {}, r = reg): Promise<Buffer> {
  const { client } = faultClient([reg, cdn]);
  const out = collector();
  try {
    await client.downloadBlob(at(r, repo), d, out.stream, extra);
    return out.bytes();
  } finally {
    await client.close();
  }
}

function truncatedThen(repo: string, onResume: Parameters<FaultRegistry['route']>[2]): void {
  reg.route('GET', `/v2/${repo}/blobs/${sha256(payload)}`, (req, res, hit) => (hit === 1 ? sendTruncated(res, payload, 100_000) : onResume(req, res, hit)));
}

test('truncated body, resume answered 206 with the exact Content-Range', async () => {
  truncatedThen('b/206', (req, res) => {
    assert.equal(req.headers.range, `bytes=100000-${payload.length - 1}`);
    res.writeHead(206, { 'content-range': `bytes 100000-${payload.length - 1}/${payload.length}` }).end(payload.subarray(100_000));
  });
  assert.ok((await download('b/206', desc(payload))).equals(payload));
  assert.equal(reg.requestsTo('/v2/b/206/blobs/')[0]!.headers['accept-encoding'], 'identity');
});

test('truncated body, resume answered 200: restart from zero, prefix re-checked, nothing duplicated', async () => {
  truncatedThen('b/200', (_req, res) => res.writeHead(200, { 'content-length': String(payload.length) }).end(payload));
  assert.ok((await download('b/200', desc(payload))).equals(payload));
});

test('truncated body, resume answered 416: one restart without Range', async () => {
  truncatedThen('b/416', (req, res) => (req.headers.range ? res.writeHead(416).end() : res.writeHead(200).end(payload)));
  assert.ok((await download('b/416', desc(payload))).equals(payload));
  assert.deepEqual(reg.requestsTo('/v2/b/416/').map((r) => r.headers.range), [undefined, `bytes=100000-${payload.length - 1}`, undefined]);
});

test('resume with a Content-Range starting elsewhere is a protocol error', async () => {
  truncatedThen('b/badrange', (_req, res) => res.writeHead(206, { 'content-range': `bytes 0-${payload.length - 1}/${payload.length}` }).end(payload));
  await assert.rejects(download('b/badrange', desc(payload)), code('REGISTRY_PROTOCOL'));
});

test('restart from zero with different content is caught on the prefix', async () => {
  const other = Buffer.from(payload);
  other[10] = (other[10] ?? 0) ^ 0xff;
  truncatedThen('b/changed', (_req, res) => res.writeHead(200).end(other));
  await assert.rejects(download('b/changed', desc(payload)), code('OCI_DIGEST_MISMATCH'));
});

test('wrong digest: the stream errors instead of ending', async () => {
  const bytes = randomBytes(5000);
  serveBlob(reg, 'b/wrong', bytes, sha256('not these bytes'));
  await assert.rejects(download('b/wrong', desc(bytes, sha256('not these bytes'))), code('OCI_DIGEST_MISMATCH'));
});

test('oversize body (more bytes than the descriptor) is refused', async () => {
  const bytes = randomBytes(5000);
  reg.route('GET', `/v2/b/big/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(200).end(Buffer.concat([bytes, Buffer.from('x')])));
  await assert.rejects(download('b/big', desc(bytes)), code('OCI_DIGEST_MISMATCH'));
  reg.route('GET', `/v2/b/biglen/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(200, { 'content-length': '5001' }).end(Buffer.concat([bytes, Buffer.from('x')])));
  await assert.rejects(download('b/biglen', desc(bytes)), code('OCI_DIGEST_MISMATCH'));
});

test('redirect to another origin: no Authorization there (presigned URL rejects it)', async () => {
  const bytes = randomBytes(3000);
  reg.route('GET', '/v2/', (_q, res) => res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end());
  reg.route('GET', `/v2/b/presigned/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(307, { location: `${cdn.url}/bucket/obj?X-Amz-Signature=abc` }).end());
  cdn.route('GET', '/bucket/obj', (q, res) => (q.headers.authorization ? res.writeHead(400).end('Only one auth mechanism allowed') : res.writeHead(200).end(bytes)));
  const { client } = faultClient([reg, cdn]);
  const out = collector();
  await client.downloadBlob(at(reg, 'b/presigned'), desc(bytes), out.stream, { credentials: { type: 'basic', username: 'u', password: 'p' } });
  assert.ok(out.bytes().equals(bytes));
  assert.ok(reg.requestsTo('/v2/b/presigned/')[0]!.headers.authorization?.startsWith('Basic '));
  assert.equal(cdn.requestsTo('/bucket/')[0]!.headers.authorization, undefined);
  reg.route('GET', '/v2/', (_q, res) => res.writeHead(200).end('{}'));
  await client.close();
});

test('redirect to an origin with its own challenge: anonymous token there, never our credentials', async () => {
  const bytes = randomBytes(2000);
  reg.route('GET', `/v2/b/cdnauth/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(302, { location: `${cdn.url}/cdn/blob` }).end());
  cdn.route('GET', '/cdn/blob', (q, res) => (q.headers.authorization === 'Bearer cdn-token' ? res.writeHead(200).end(bytes)
    : res.writeHead(401, { 'www-authenticate': `Bearer realm="${cdn.url}/cdn-token",service="cdn"` }).end()));
  cdn.route('GET', '/cdn-token', (_q, res) => res.writeHead(200).end(JSON.stringify({ token: 'cdn-token' })));
  const got = await download('b/cdnauth', desc(bytes), { credentials: { type: 'basic', username: 'u', password: 'secret' } });
  assert.ok(got.equals(bytes));
  assert.equal(cdn.requestsTo('/cdn-token')[0]!.headers.authorization, undefined);
});

test('too many redirects and non-http schemes are protocol errors', async () => {
  const bytes = randomBytes(10);
  reg.route('GET', `/v2/b/loop/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(302, { location: `/v2/b/loop/blobs/${sha256(bytes)}` }).end());
  await assert.rejects(download('b/loop', desc(bytes)), code('REGISTRY_PROTOCOL'));
  assert.equal(reg.requestsTo('/v2/b/loop/').length, 11);
  reg.route('GET', `/v2/b/ftp/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(302, { location: 'ftp://x/y' }).end());
  await assert.rejects(download('b/ftp', desc(bytes)), code('REGISTRY_PROTOCOL'));
});

test('https registry redirecting to plain http is refused (certs.d CA for the https one)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oci-fault-tls-'));
  const cert = await createTestCertificate(dir);
  const secure = await startFaultRegistry({ tls: { cert: cert.cert, key: cert.key } });
  try {
    const bytes = randomBytes(100);
    secure.route('GET', `/v2/b/down/blobs/${sha256(bytes)}`, (_q, res) => res.writeHead(307, { location: `${cdn.url}/plain` }).end());
    cdn.route('GET', '/plain', (_q, res) => res.writeHead(200).end(bytes));
    const { client } = faultClient([], { certsDirs: [await writeCertsDir(join(dir, 'certs.d'), secure.host, cert.cert)] });
    await assert.rejects(client.downloadBlob(at(secure, 'b/down'), desc(bytes), collector().stream), code('REGISTRY_PROTOCOL'));
    assert.equal(cdn.requestsTo('/plain').length, 0);
    await client.close();
  } finally {
    await secure.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('progress events, empty blobs, sha512 blobs', async () => {
  const big = randomBytes(3 * 1024 * 1024 + 1);
  serveBlob(reg, 'b/progress', big);
  const events: number[] = [];
  await download('b/progress', desc(big), { onProgress: (p) => { assert.equal(p.total, big.length); events.push(p.bytes); } });
  assert.deepEqual(events.slice(-1), [big.length]);
  assert.ok(events.length >= 3 && events.every((v, i) => i === 0 || v > events[i - 1]!));
  assert.equal((await download('b/empty', desc(Buffer.alloc(0)))).length, 0);
  const small = randomBytes(77);
  const d512 = `sha512:${createHash('sha512').update(small).digest('hex')}`;
  serveBlob(reg, 'b/512', small, d512);
  assert.ok((await download('b/512', desc(small, d512))).equals(small));
});

test('an aborted signal cancels the download (CANCELLED) and interruptions are bounded', async () => {
  const bytes = randomBytes(200_000);
  reg.route('GET', `/v2/b/slow/blobs/${sha256(bytes)}`, (_q, res) => sendTruncated(res, bytes, 50_000));
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(download('b/slow', desc(bytes), { signal: controller.signal }), code('CANCELLED'));
  await assert.rejects(download('b/slow', desc(bytes), { maxResumes: 2 }), code('REGISTRY_UNREACHABLE'));
});

// openBlobChunks: the same verified bytes without a stream layer (the image writer iterates it).
async function iterate(repo: string, d: Descriptor, stopAfter?: number): Promise<{ bytes: Buffer; sizes: number[] }> {
  const { client } = faultClient([reg, cdn]);
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of await client.openBlobChunks(at(reg, repo), d)) {
      chunks.push(chunk);
      if (stopAfter !== undefined && chunks.length >= stopAfter) break;
    }
    return { bytes: Buffer.concat(chunks), sizes: chunks.map((c) => c.length) };
  } finally {
    await client.close();
  }
}

test('openBlobChunks yields the verified bytes, batched: every batch but the last is at least 64 KiB', async () => {
  serveBlob(reg, 'b/chunks', payload);
  const { bytes, sizes } = await iterate('b/chunks', desc(payload));
  assert.ok(bytes.equals(payload));
  assert.ok(sizes.slice(0, -1).every((n) => n >= 64 * 1024), sizes.join(','));
});

test('openBlobChunks throws on a wrong digest instead of ending', async () => {
  const bytes = randomBytes(5000);
  serveBlob(reg, 'b/chunks-wrong', bytes, sha256('other bytes'));
  await assert.rejects(iterate('b/chunks-wrong', desc(bytes, sha256('other bytes'))), code('OCI_DIGEST_MISMATCH'));
});

test('ending openBlobChunks early cancels the download (the connection is closed, nothing hangs)', async () => {
  const big = randomBytes(512 * 1024);
  let closed!: () => void;
  const connectionClosed = new Promise<void>((resolve) => { closed = resolve; });
  reg.route('GET', `/v2/b/chunks-stop/blobs/${sha256(big)}`, (_req, res) => {
    res.writeHead(200, { 'content-length': String(big.length) });
    res.write(big.subarray(0, 200 * 1024)); // then stalls: only a cancel ends this request
    res.once('close', () => closed());
  });
  const { bytes } = await iterate('b/chunks-stop', desc(big), 1);
  assert.ok(bytes.length > 0 && big.subarray(0, bytes.length).equals(bytes));
  await connectionClosed;
});
