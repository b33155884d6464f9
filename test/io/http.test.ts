/**
 * The downloader against real servers on 127.0.0.1:0: the body streamed with its size, the
 * caller's headers, redirects (and their limit), a proxy from the environment, TLS with a CA or
 * `insecure` (and refused without either), the idle timeout, the total deadline with a
 * trickling server, the size cap, 4xx/5xx with long HTML bodies (a short, clean excerpt; 5xx
 * retried, 4xx not), the caller's codes, cancellation, and URLs redacted everywhere.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { AgentError, isAgentError } from '../../src/errors.ts';
import { bodyExcerpt } from '../../src/io/excerpt.ts';
import { httpDownload, type HttpDownloadOptions } from '../../src/io/http.ts';
import { redactUrl, urlSecrets } from '../../src/io/url.ts';
import { createTestCertificate, type TestCertificate } from '../helpers/registry.ts';
import { toolMissing } from '../helpers/tools.ts';
import { tempDir } from '../image/helpers.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface TestServer {
  url: string;
  hits: Map<string, number>;
  headers: Map<string, IncomingMessage['headers']>;
  route(path: string, handler: Handler): void;
  close(): Promise<void>;
}

async function listen(server: Server, scheme: 'http' | 'https', routes: Map<string, Handler>): Promise<TestServer> {
  const hits = new Map<string, number>();
  const headers = new Map<string, IncomingMessage['headers']>();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    headers.set(path, req.headers);
    const handler = routes.get(path);
    if (handler) handler(req, res);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('no such object');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits, headers,
    route: (path, handler) => routes.set(path, handler),
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out);
}

// Downloads the whole body (closing the download either way).
async function fetchAll(url: string, options: Partial<HttpDownloadOptions> = {}): Promise<{ body: Buffer; size: number | undefined }> {
  const download = await httpDownload(url, { subject: 'the test file', errorCode: 'IMAGE_DOWNLOAD_FAILED', timeoutMs: 5000, ...options });
  try {
    return { body: await collect(download.chunks), size: download.size };
  } finally {
    await download.close();
  }
}

function failsWith(code: string, pattern?: RegExp, check?: (e: AgentError) => void) {
  return (err: unknown) => {
    assert.ok(isAgentError(err), `expected an AgentError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    check?.(err);
    return true;
  };
}

// Sends `total` bytes, one every `everyMs`, so no single wait reaches the idle timeout.
function trickle(total: number, everyMs: number): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-length': String(total) });
    let sent = 0;
    const timer = setInterval(() => {
      res.write('x');
      if (++sent === total) {
        clearInterval(timer);
        res.end();
      }
    }, everyMs);
    res.on('close', () => clearInterval(timer));
  };
}

const LONG_HTML = `<!DOCTYPE html><html><head><title>Error</title><style>body { color: red; }</style>
<script>var secret = "not shown";</script></head><body>\n\n<h1>Not   Found</h1>\x1b[31m<p>The object you requested &amp; its
parents do not exist.</p>${'<div>padding text that goes on and on</div>\n'.repeat(200)}</body></html>`;

describe('httpDownload', () => {
  let plain: TestServer;
  before(async () => {
    plain = await listen(createHttpServer(), 'http', new Map());
    plain.route('/file', (_req, res) => res.writeHead(200, { 'content-length': '11' }).end('hello world'));
    plain.route('/chunked', (_req, res) => {
      res.writeHead(200);
      res.write('abc');
      res.end('def');
    });
    plain.route('/created', (_req, res) => res.writeHead(201).end('made'));
    for (let i = 0; i < 7; i++) plain.route(`/hop${i}`, (_req, res) => res.writeHead(302, { location: `/hop${i + 1}` }).end());
    plain.route('/hop7', (_req, res) => res.writeHead(200).end('arrived'));
    plain.route('/gone', (_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end(LONG_HTML));
    plain.route('/flaky', (_req, res) => res.writeHead(503, { 'content-type': 'text/html' }).end(LONG_HTML));
    plain.route('/echo', (req, res) => res.writeHead(403, { 'content-type': 'text/plain' }).end(`denied: ${req.url} signature mismatch`));
    plain.route('/stall', (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('first bytes');
    });
    plain.route('/silent', () => undefined);
    plain.route('/trickle', trickle(12, 60));
    plain.route('/big', (_req, res) => res.writeHead(200, { 'content-length': String(4096) }).end(Buffer.alloc(4096)));
    plain.route('/big-chunked', (_req, res) => {
      res.writeHead(200);
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024));
      res.end();
    });
  });
  after(() => plain.close());

  test('streams the body with its announced size and sends the caller\'s headers', async () => {
    const got = await fetchAll(`${plain.url}/file`, { headers: { authorization: 'Bearer t0ken' } });
    assert.equal(got.body.toString(), 'hello world');
    assert.equal(got.size, 11);
    assert.equal(plain.headers.get('/file')?.authorization, 'Bearer t0ken');
    assert.equal(plain.headers.get('/file')?.['accept-encoding'], 'identity');
    const chunked = await fetchAll(`${plain.url}/chunked`);
    assert.equal(chunked.body.toString(), 'abcdef');
    assert.equal(chunked.size, undefined);
  });

  test('okStatus: only that status, else any 2xx', async () => {
    assert.equal((await fetchAll(`${plain.url}/created`)).body.toString(), 'made');
    await assert.rejects(fetchAll(`${plain.url}/created`, { okStatus: 200 }), failsWith('IMAGE_DOWNLOAD_FAILED', /^Received status code 201 from .*, expected 200\. Response body: made$/));
  });

  test('follows up to maxRedirections redirects; past them the 3xx is the error', async () => {
    assert.equal((await fetchAll(`${plain.url}/hop2`)).body.toString(), 'arrived');
    await assert.rejects(fetchAll(`${plain.url}/hop0`), failsWith('IMAGE_DOWNLOAD_FAILED', /status code 302 .* after following 5 redirects at most/, (e) => {
      assert.equal(e.details.status, 302);
    }));
    assert.equal((await fetchAll(`${plain.url}/hop0`, { maxRedirections: 7 })).body.toString(), 'arrived');
  });

  test('a 4xx with a long HTML page: a short, clean excerpt, the caller\'s code, no retry', async () => {
    plain.hits.delete('/gone');
    await assert.rejects(fetchAll(`${plain.url}/gone?temp_url_sig=s3cr3tsig`, { errorCode: 'CONFIGDRIVE_DOWNLOAD_FAILED', retries: 3, retryDelayMs: 1 }), failsWith('CONFIGDRIVE_DOWNLOAD_FAILED', /status code 404/, (e) => {
      const excerpt = e.message.split('Response body: ')[1] ?? '';
      assert.ok(excerpt.startsWith('Error Not Found The object you requested & its parents do not exist.'), excerpt);
      assert.ok(excerpt.length <= 200, `${excerpt.length} characters`);
      assert.ok(excerpt.endsWith('…'));
      assert.doesNotMatch(e.message, /[<>\x00-\x1f]|not shown|color: red|s3cr3tsig/);
      assert.deepEqual(e.details, { url: `${plain.url}/gone?…`, status: 404 });
    }));
    assert.equal(plain.hits.get('/gone'), 1, 'a 4xx is not retried');
  });

  test('a 5xx is retried `retries` times, then fails with its status', async () => {
    plain.hits.delete('/flaky');
    await assert.rejects(fetchAll(`${plain.url}/flaky`, { retries: 2, retryDelayMs: 10 }), failsWith('IMAGE_DOWNLOAD_FAILED', /^Received status code 503 .*expected a 2xx status\. Response body: Error Not Found/));
    assert.equal(plain.hits.get('/flaky'), 3);
  });

  test('connection errors are retried too, and name the cause', async () => {
    const closed = await listen(createHttpServer(), 'http', new Map());
    const url = closed.url;
    await closed.close();
    await assert.rejects(fetchAll(`${url}/x`, { retries: 1, retryDelayMs: 10 }), failsWith('IMAGE_DOWNLOAD_FAILED', /^Cannot download the test file from http:\/\/127\.0\.0\.1:\d+\/x: .*ECONNREFUSED/, (e) => {
      assert.equal(e.details.error_code, 'ECONNREFUSED');
    }));
  });

  test('no credentials or query in messages; a body echoing the query is scrubbed', async () => {
    const url = `${plain.url.replace('http://', 'http://user:pa55word@')}/echo?sig=abcdef123456&expires=99`;
    await assert.rejects(fetchAll(url), failsWith('IMAGE_DOWNLOAD_FAILED', /status code 403/, (e) => {
      assert.doesNotMatch(e.message, /abcdef123456|pa55word|user/);
      assert.match(e.message, /Response body: denied: \/echo\?sig=…&expires=99 signature mismatch$/);
      assert.equal(e.details.url, `${plain.url}/echo?…`);
    }));
  });

  test('idle timeout: headers that never come, a body that stops', async () => {
    await assert.rejects(fetchAll(`${plain.url}/silent`, { timeoutMs: 200 }), failsWith('IMAGE_DOWNLOAD_FAILED', /no data for 0\.2 s \(UND_ERR_HEADERS_TIMEOUT\)/));
    const started = performance.now();
    await assert.rejects(fetchAll(`${plain.url}/stall`, { timeoutMs: 200 }), failsWith('IMAGE_DOWNLOAD_FAILED', /no data for 0\.2 s \(UND_ERR_BODY_TIMEOUT\)/));
    assert.ok(performance.now() - started < 3000);
  });

  test('the total deadline stops a server that trickles (each wait under the idle timeout)', async () => {
    plain.hits.delete('/trickle');
    const started = performance.now();
    await assert.rejects(fetchAll(`${plain.url}/trickle`, { errorCode: 'CONFIGDRIVE_DOWNLOAD_FAILED', timeoutMs: 1000, deadlineMs: 400, retries: 2, retryDelayMs: 10 }), failsWith('CONFIGDRIVE_DOWNLOAD_FAILED', /not finished within the download deadline of 0\.4 s/, (e) => {
      assert.equal(e.details.deadline_ms, 400);
    }), 'errorCode is the caller\'s');
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 380 && elapsed < 1500, `${elapsed} ms`);
    assert.equal(plain.hits.get('/trickle'), 1, 'the deadline is not retried');
    // Within the deadline the same trickle is fine.
    assert.equal((await fetchAll(`${plain.url}/trickle`, { deadlineMs: 10_000 })).body.length, 12);
  });

  test('the size cap: announced (nothing read) or counted, with the too-large code', async () => {
    const opts = { maxBytes: 2048, errorCode: 'CONFIGDRIVE_DOWNLOAD_FAILED', tooLargeCode: 'CONFIGDRIVE_TOO_LARGE' } as const;
    const check = (e: AgentError) => {
      assert.equal(e.details.max_download_bytes, 2048);
      assert.ok((e.details.size_bytes_at_least as number) > 2048);
    };
    await assert.rejects(fetchAll(`${plain.url}/big`, opts), failsWith('CONFIGDRIVE_TOO_LARGE', /more than 2048 bytes, the most accepted/, check));
    await assert.rejects(fetchAll(`${plain.url}/big-chunked`, opts), failsWith('CONFIGDRIVE_TOO_LARGE', /more than 2048 bytes/, check));
    assert.equal((await fetchAll(`${plain.url}/big`, { maxBytes: 4096 })).body.length, 4096);
  });

  test('cancellation: CANCELLED, whether waiting for data or between retries', async () => {
    const ac = new AbortController();
    const download = await httpDownload(`${plain.url}/stall`, { subject: 'the test file', errorCode: 'IMAGE_DOWNLOAD_FAILED', signal: ac.signal });
    setTimeout(() => ac.abort(new Error('shutdown')), 50);
    await assert.rejects(collect(download.chunks), failsWith('CANCELLED', /^Downloading the test file was cancelled$/));
    await download.close();
    await download.close();
    const retrying = new AbortController();
    setTimeout(() => retrying.abort(), 100);
    await assert.rejects(fetchAll(`${plain.url}/flaky`, { signal: retrying.signal, retries: 5, retryDelayMs: 10_000 }), failsWith('CANCELLED'));
  });

  test('a proxy from the environment (HTTP_PROXY) carries the request', async () => {
    const tunnels: string[] = [];
    const proxy = createHttpServer();
    const sockets = new Set<Socket>();
    proxy.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
      tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = connect(Number(port), host!, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
      }
    });
    const server = await listen(proxy, 'http', new Map());
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, http_proxy: process.env.http_proxy, NO_PROXY: process.env.NO_PROXY, no_proxy: process.env.no_proxy };
    try {
      for (const key of Object.keys(saved)) delete process.env[key];
      process.env.HTTP_PROXY = server.url;
      assert.equal((await fetchAll(`${plain.url}/file`)).body.toString(), 'hello world');
      assert.deepEqual(tunnels, [new URL(plain.url).host]);
      process.env.NO_PROXY = '127.0.0.1';
      await fetchAll(`${plain.url}/file`);
      assert.equal(tunnels.length, 1, 'NO_PROXY bypasses the proxy');
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
      for (const s of sockets) s.destroy();
      await server.close();
    }
  });

  describe('TLS', { skip: toolMissing('openssl') }, () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    let cert: TestCertificate;
    let secure: TestServer;
    before(async () => {
      tmp = await tempDir('io-http-');
      cert = await createTestCertificate(tmp.dir);
      secure = await listen(createHttpsServer({ cert: cert.cert, key: cert.key }), 'https', new Map());
      secure.route('/file', (_req, res) => res.writeHead(200).end('over tls'));
    });
    after(async () => {
      await secure?.close();
      await tmp?.cleanup();
    });

    test('an unknown CA is refused; `ca` or `insecure` lets it through', async () => {
      await assert.rejects(fetchAll(`${secure.url}/file`), failsWith('IMAGE_DOWNLOAD_FAILED', /self-signed certificate/));
      assert.equal((await fetchAll(`${secure.url}/file`, { ca: cert.cert })).body.toString(), 'over tls');
      assert.equal((await fetchAll(`${secure.url}/file`, { insecure: true })).body.toString(), 'over tls');
    });
  });
});

describe('redaction and excerpts', () => {
  test('redactUrl keeps scheme, host, port and path; drops credentials, query and fragment', () => {
    assert.equal(redactUrl('https://u:p@swift.example:8080/v1/AUTH_x/c/o?temp_url_sig=abc&temp_url_expires=1#frag'), 'https://swift.example:8080/v1/AUTH_x/c/o?…');
    assert.equal(redactUrl('http://host/path'), 'http://host/path');
    assert.equal(redactUrl('oci://registry.local:5000/disks/fedora:41'), 'oci://registry.local:5000/disks/fedora:41');
    assert.equal(redactUrl('not a url'), '<unparsable URL>');
  });

  test('urlSecrets: query values and credentials worth hiding, longest first', () => {
    assert.deepEqual(urlSecrets('https://user:pa%24%24word@h/p?sig=abcdef123&x=1&long=abcdefghijkl'), ['abcdefghijkl', 'pa%24%24word', 'abcdef123', 'pa$$word']);
    assert.deepEqual(urlSecrets('nonsense'), []);
  });

  test('bodyExcerpt: markup, entities, controls and secrets handled, cut at 200 characters', () => {
    assert.equal(bodyExcerpt(Buffer.from('<p>a &lt;b&gt; &#x41;&#66;</p>\r\n\tc\x07d\u202ee \x1b[31mred\x1b[0m')), 'a <b> AB cde red');
    assert.equal(bodyExcerpt(Buffer.from('token=SECRETVALUE here'), ['SECRETVALUE']), 'token=… here');
    const long = bodyExcerpt(Buffer.from('word '.repeat(100)));
    assert.ok(Array.from(long).length <= 200 && long.length > 190, long);
    assert.ok(long.endsWith('…') && !long.endsWith(' …'), long);
    assert.equal(bodyExcerpt(Buffer.from('<div unclosed')), '');
    assert.equal(bodyExcerpt(Buffer.from([0x68, 0x69, 0xe2, 0x82])), 'hi', 'a character cut by the read limit');
  });
});
