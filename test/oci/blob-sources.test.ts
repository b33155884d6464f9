/**
 * Blob fallback across sources: when one source gives up, the download continues from the byte it
 * reached on the next session (Range resume, hash state kept), and the final error names every
 * source tried. Real registries behind a TCP proxy that dies mid-blob, plus fault registries for
 * the answers a real registry will not give on demand.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openBlobChunks, openBlobStream, type BlobOptions } from '../../src/oci/blob.ts';
import { OciClient, parseReference, type Descriptor } from '../../src/oci/index.ts';
import type { RegistrySession } from '../../src/oci/session.ts';
import { faultClient, sendTruncated, serveBlob, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';
import { registryUnavailable, startRegistry, writeCertsDir, type TestRegistry } from '../helpers/registry.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

const code = (c: string) => (e: { code?: string }) => e.code === c;
const desc = (bytes: Buffer): Descriptor => ({ mediaType: 'application/octet-stream', digest: sha256(bytes), size: bytes.length });

async function collect(sessions: RegistrySession | RegistrySession[], d: Descriptor, options: BlobOptions = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of openBlobChunks(sessions, d, options)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('two real registries, the first dies mid-blob', { skip: registryUnavailable() }, () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let certs: string;
  const blob = randomBytes(8 * 1024 * 1024 + 123);
  const d = desc(blob);

  before(async () => {
    [mirror, origin] = await Promise.all([startRegistry({ auth: 'basic' }), startRegistry({ auth: 'basic', username: 'other', password: 'secret2' })]);
    await mirror.pushBlob('fleet/disk', blob);
    await origin.pushBlob('fleet/disk', blob);
    certs = await mkdtemp(join(tmpdir(), 'blob-sources-certs-'));
  });
  after(async () => {
    await Promise.all([mirror?.stop(), origin?.stop()]);
    if (certs) await rm(certs, { recursive: true, force: true });
  });

  async function sessionsThrough(dying: TcpProxy, counting: TcpProxy): Promise<{ client: OciClient; sessions: RegistrySession[] }> {
    await writeCertsDir(certs, dying.host, mirror.cert.cert);
    await writeCertsDir(certs, counting.host, origin.cert.cert);
    const client = new OciClient({ registries: { registries: [] }, policy: null, authFilePaths: [], certsDirs: [certs], sleep: async () => {} });
    const ref = (host: string) => parseReference(`oci://${host}/fleet/disk:x`);
    const source = (host: string, mirrorFlag: boolean) => ({ registry: host, repository: 'fleet/disk', insecure: false, mirror: mirrorFlag });
    const first = await client.session(source(dying.host, true), ref(dying.host), { type: 'basic', username: mirror.username, password: mirror.password });
    const second = await client.session(source(counting.host, false), ref(counting.host), { type: 'basic', username: origin.username, password: origin.password });
    return { client, sessions: [first.session, second.session] };
  }

  test('the download continues on the second registry from the byte reached, with Range, and verifies', async () => {
    const dying = await startTcpProxy(mirror.host, { dieAfter: 3 * 1024 * 1024 });
    const counting = await startTcpProxy(origin.host);
    const { client, sessions } = await sessionsThrough(dying, counting);
    const switches: { index: number; code: unknown }[] = [];
    try {
      const got = await collect(sessions, d, { onSource: (index, err) => switches.push({ index, code: (err as { code?: unknown }).code }) });
      assert.ok(got.equals(blob));
      assert.deepEqual(switches, [{ index: 1, code: 'REGISTRY_UNREACHABLE' }]);
      // The second registry sent only the rest: at least 3 MiB of the blob came from the first.
      assert.ok(counting.served() < blob.length - 2 * 1024 * 1024, `second source served ${counting.served()} bytes of ${blob.length}`);
      assert.ok(counting.served() > blob.length - 6 * 1024 * 1024);
    } finally {
      await client.close();
      await dying.close();
      await counting.close();
    }
  });

  test('openBlobStream takes the same list of sessions', async () => {
    const dying = await startTcpProxy(mirror.host, { dieAfter: 1024 * 1024 });
    const counting = await startTcpProxy(origin.host);
    const { client, sessions } = await sessionsThrough(dying, counting);
    try {
      const hash = createHash('sha256');
      for await (const chunk of openBlobStream(sessions, d)) hash.update(chunk as Buffer);
      assert.equal(`sha256:${hash.digest('hex')}`, d.digest);
    } finally {
      await client.close();
      await dying.close();
      await counting.close();
    }
  });
});

describe('fallback decisions (fault registries)', () => {
  let a: FaultRegistry;
  let b: FaultRegistry;
  let c: FaultRegistry;
  const payload = randomBytes(300 * 1024 + 7);
  const d = desc(payload);
  before(async () => {
    [a, b, c] = await Promise.all([startFaultRegistry(), startFaultRegistry(), startFaultRegistry()]);
  });
  after(async () => {
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  async function sessions(repo: string, regs: FaultRegistry[]): Promise<{ client: OciClient; list: RegistrySession[] }> {
    const { client } = faultClient(regs);
    const list: RegistrySession[] = [];
    for (const r of regs) {
      const source = { registry: r.host, repository: repo, insecure: true, mirror: r !== regs.at(-1) };
      list.push((await client.session(source, parseReference(`oci://${r.host}/${repo}:x`), undefined)).session);
    }
    return { client, list };
  }

  test('404 on the first source: the second serves the whole blob', async () => {
    serveBlob(b, 'f/404', payload);
    const { client, list } = await sessions('f/404', [a, b]);
    const seen: number[] = [];
    try {
      assert.ok((await collect(list, d, { onSource: (i) => seen.push(i) })).equals(payload));
      assert.deepEqual(seen, [1]);
      assert.equal(b.requestsTo('/v2/f/404/blobs/')[0]!.headers.range, undefined);
    } finally {
      await client.close();
    }
  });

  test('5xx after retries, then a cut body on the second: the third resumes with Range from the byte reached', async () => {
    a.route('GET', `/v2/f/5xx/blobs/${d.digest}`, (_req, res) => res.writeHead(503).end());
    b.route('GET', `/v2/f/5xx/blobs/${d.digest}`, (_req, res) => sendTruncated(res, payload, 100_000));
    serveBlob(c, 'f/5xx', payload);
    const { client, list } = await sessions('f/5xx', [a, b, c]);
    const seen: { index: number; code: unknown }[] = [];
    try {
      const got = await collect(list, d, { maxResumes: 1, onSource: (index, err) => seen.push({ index, code: (err as { code?: unknown }).code }) });
      assert.ok(got.equals(payload));
      assert.deepEqual(seen, [{ index: 1, code: 'REGISTRY_UNAVAILABLE' }, { index: 2, code: 'REGISTRY_UNREACHABLE' }]);
      assert.equal(a.requestsTo('/v2/f/5xx/blobs/').length, 5);
      assert.equal(b.requestsTo('/v2/f/5xx/blobs/').length, 2);
      assert.deepEqual(c.requestsTo('/v2/f/5xx/blobs/').map((r) => r.headers.range), [`bytes=100000-${payload.length - 1}`]);
    } finally {
      await client.close();
    }
  });

  test('the next source answers 200 to the Range: restart from zero, prefix re-checked, nothing duplicated', async () => {
    a.route('GET', `/v2/f/200/blobs/${d.digest}`, (_req, res) => sendTruncated(res, payload, 150_000));
    b.route('GET', `/v2/f/200/blobs/${d.digest}`, (_req, res) => res.writeHead(200, { 'content-length': String(payload.length) }).end(payload));
    const { client, list } = await sessions('f/200', [a, b]);
    try {
      assert.ok((await collect(list, d, { maxResumes: 0 })).equals(payload));
    } finally {
      await client.close();
    }
  });

  test('the next source with other content is caught on the re-checked prefix', async () => {
    const other = Buffer.from(payload);
    other[5] = (other[5] ?? 0) ^ 0xff;
    a.route('GET', `/v2/f/other/blobs/${d.digest}`, (_req, res) => sendTruncated(res, payload, 150_000));
    b.route('GET', `/v2/f/other/blobs/${d.digest}`, (_req, res) => res.writeHead(200).end(other));
    const { client, list } = await sessions('f/other', [a, b]);
    try {
      await assert.rejects(collect(list, d, { maxResumes: 0 }), code('OCI_DIGEST_MISMATCH'));
    } finally {
      await client.close();
    }
  });

  test('a digest mismatch is final: the next source is not asked', async () => {
    const wrong = Buffer.from(payload);
    wrong[wrong.length - 1] = (wrong[wrong.length - 1] ?? 0) ^ 1;
    a.route('GET', `/v2/f/bad/blobs/${d.digest}`, (_req, res) => res.writeHead(200).end(wrong));
    serveBlob(b, 'f/bad', payload);
    const { client, list } = await sessions('f/bad', [a, b]);
    const seen: number[] = [];
    try {
      await assert.rejects(collect(list, d, { onSource: (i) => seen.push(i) }), code('OCI_DIGEST_MISMATCH'));
      assert.deepEqual(seen, []);
      assert.equal(b.requestsTo('/v2/f/bad/').length, 0);
    } finally {
      await client.close();
    }
  });

  test('every source fails: the error has the last code and names each source with its reason', async () => {
    b.route('GET', `/v2/f/none/blobs/${d.digest}`, (_req, res) => res.writeHead(500).end());
    const { client, list } = await sessions('f/none', [a, b]);
    try {
      await assert.rejects(collect(list, d), (e: { code?: string; message: string; details: { sources: { registry: string; code: string }[] } }) => {
        assert.equal(e.code, 'REGISTRY_UNAVAILABLE');
        assert.match(e.message, new RegExp(`${a.host}/f/none: .*HTTP 404.*; ${b.host}/f/none: .*HTTP 500`));
        assert.deepEqual(e.details.sources.map((s) => [s.registry, s.code]), [[a.host, 'REGISTRY_NOT_FOUND'], [b.host, 'REGISTRY_UNAVAILABLE']]);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  test('one session alone fails as before, with its own error', async () => {
    const { client, list } = await sessions('f/alone', [a]);
    try {
      await assert.rejects(collect(list[0]!, d), (e: { code?: string; details: Record<string, unknown> }) => e.code === 'REGISTRY_NOT_FOUND' && e.details['sources'] === undefined);
    } finally {
      await client.close();
    }
  });

  test('a cancellation is final: no other source is tried', async () => {
    a.route('GET', `/v2/f/cancel/blobs/${d.digest}`, (_req, res) => {
      res.writeHead(200, { 'content-length': String(payload.length) });
      res.write(payload.subarray(0, 70_000));
    });
    serveBlob(b, 'f/cancel', payload);
    const { client, list } = await sessions('f/cancel', [a, b]);
    const controller = new AbortController();
    try {
      await assert.rejects((async () => {
        for await (const _ of openBlobChunks(list, d, { signal: controller.signal })) controller.abort();
      })(), code('CANCELLED'));
      assert.equal(b.requestsTo('/v2/f/cancel/').length, 0);
    } finally {
      await client.close();
    }
  });
});
