// Hostile and heavy clients on a real socket (issue 13, findings 4–7): bodies are never read
// before the token is checked, deadlines close slow clients with a JSON 408, malformed requests
// get a JSON 400/431, connections and requests in flight are bounded, and nothing secret is logged.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { z } from 'zod';
import { createRouter, startApiServer, type ApiLimits } from '../../src/api/index.ts';
import { CommandExecutor, createStepCommands, defineCommand, StepRegistry } from '../../src/commands/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { generateSelfSignedCertificate } from '../../src/tls/index.ts';
import { connectRaw, rawRequest, type RawConnection, type RawReply } from './raw-http.ts';

const TOKEN = 'secret-token-'.padEnd(43, 'x');
const Q = `agent_token=${TOKEN}`;
let tlsPair: { certPem: string; keyPem: string } | undefined;

interface Started {
  port: number;
  executor: CommandExecutor;
  /** Ends the held deploy step. */
  release(): void;
  /** `?wait=true` requests that have reached the executor so far. */
  waits(): number;
  logText(): Promise<string>;
}

// A server with a deploy step that runs until `release()`, and a logger at debug level whose
// lines the test reads back.
async function start(t: TestContext, limits: Partial<ApiLimits> = {}, options: { tls?: boolean; maxBodyBytes?: number } = {}): Promise<Started> {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  const log = createLogger({ stream, level: 'debug' });
  const executor = new CommandExecutor({ log });
  const steps = new StepRegistry();
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  steps.register([{ interface: 'deploy', step: 'held', priority: 0, reboot_requested: false, run: async () => { await held; return null; } }]);
  executor.register([
    ...createStepCommands(steps),
    defineCommand({ name: 'test.echo', mode: 'sync', params: z.object({ v: z.unknown() }).strict(), run: async (p) => p.v }),
  ]);
  let waits = 0;
  const wait = executor.wait.bind(executor);
  executor.wait = (...args) => { waits++; return wait(...args); };
  const router = createRouter({ executor, log, agentVersion: 'test', startedAt: 0, getToken: () => TOKEN, getInventory: async () => ({}), limits });
  if (options.tls) tlsPair ??= generateSelfSignedCertificate({ ipAddresses: ['127.0.0.1'], commonName: 'test' });
  const server = await startApiServer({
    router, log, host: '127.0.0.1', port: 0, maxBodyBytes: options.maxBodyBytes ?? 100 * 2 ** 20, limits,
    ...(options.tls ? { tls: { ...tlsPair!, minVersion: 'TLSv1.2' as const } } : {}),
  });
  t.after(async () => {
    release();
    await server.close();
  });
  return {
    port: server.address.port, executor, release, waits: () => waits,
    logText: async () => { await new Promise((r) => setImmediate(r)); return lines.join(''); },
  };
}

function fault(reply: RawReply): { faultstring: string; faultcode: string; error_code: string } {
  assert.equal(reply.headers['content-type'], 'application/json', `status ${reply.status} without a JSON body: ${reply.body}`);
  const body = JSON.parse(reply.body) as { faultstring: unknown; faultcode: string; error_code: string };
  assert.equal(typeof body.faultstring, 'string');
  return body as { faultstring: string; faultcode: string; error_code: string };
}

const post = (query: string, headers: string) => `POST /v1/commands/?${query} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n${headers}\r\n`;

// Starts the held deploy step and returns `count` connections, each with a `?wait=true` request
// on it that the executor is holding.
async function waitingConnections(s: Started, count: number): Promise<RawConnection[]> {
  const body = JSON.stringify({ name: 'deploy.execute_deploy_step', params: { step: { interface: 'deploy', step: 'held', args: {} }, node: {}, ports: [] } });
  const started = await rawRequest(s.port, `${post(Q, `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`)}${body}`);
  const id = (JSON.parse(started.body) as { id: string }).id;
  const conns: RawConnection[] = [];
  const before = s.waits();
  for (let i = 0; i < count; i++) {
    const conn = await connectRaw(s.port);
    conn.write(`GET /v1/commands/${id}?wait=true&${Q} HTTP/1.1\r\nHost: agent\r\n\r\n`);
    conns.push(conn);
  }
  for (let i = 0; s.waits() < before + count; i++) {
    assert.ok(i < 300, 'the waiting requests did not reach the executor');
    await new Promise((r) => setTimeout(r, 10));
  }
  return conns;
}

async function keptAlive(port: number, tls = false, localAddress?: string): Promise<RawConnection> {
  const conn = await connectRaw(port, { tls, ...(localAddress ? { localAddress } : {}) });
  conn.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
  assert.equal((await conn.reply()).status, 200);
  return conn;
}

// A keep-alive connection from 127.0.0.2 (the conductor's address, used least recently of all),
// then three from 127.0.0.1.
async function conductorThenThree(port: number): Promise<[RawConnection, RawConnection, RawConnection, RawConnection]> {
  const conductor = await keptAlive(port, false, '127.0.0.2');
  return [conductor, await keptAlive(port), await keptAlive(port), await keptAlive(port)];
}

describe('API server: bodies, deadlines and malformed requests', () => {
  it('checks the token before reading a body: 401 at once; the rest is thrown away, a client still sending is cut off', async (t) => {
    const s = await start(t, { api_header_timeout: 0.3 });
    const conn = await connectRaw(s.port);
    t.after(() => conn.destroy());
    conn.write(post('agent_token=wrong', 'Content-Length: 104857600\r\n'));
    conn.write(Buffer.alloc(64 * 1024, 0x20));
    const reply = await conn.reply();
    assert.equal(reply.status, 401);
    assert.equal(fault(reply).faultstring, '401 Unauthorized: Token invalid.');
    await conn.closed();
  });

  it('a client refused before its body was read that finishes sending reads the reply and keeps its connection', async (t) => {
    const s = await start(t, { api_header_timeout: 0.3 });
    const conn = await connectRaw(s.port);
    t.after(() => conn.destroy());
    conn.write(post('agent_token=wrong', `Content-Length: ${2 ** 20}\r\n`));
    conn.write(Buffer.alloc(2 ** 20, 0x20));
    assert.equal((await conn.reply()).status, 401);
    await new Promise((r) => setTimeout(r, 500));
    conn.write(`GET /v1/commands/?${Q} HTTP/1.1\r\nHost: agent\r\n\r\n`);
    assert.equal((await conn.reply()).status, 200);
  });

  it('does not send 100 Continue before the token is checked', async (t) => {
    const s = await start(t, { api_header_timeout: 0.3 });
    const conn = await connectRaw(s.port);
    t.after(() => conn.destroy());
    conn.write(post('agent_token=wrong', 'Content-Length: 1048576\r\nExpect: 100-continue\r\n'));
    assert.equal((await conn.reply()).status, 401);
    await conn.closed();
  });

  it('refuses an oversized Content-Length from the headers with 413, body unsent', async (t) => {
    const s = await start(t, { api_header_timeout: 0.3 }, { maxBodyBytes: 4096 });
    const conn = await connectRaw(s.port);
    t.after(() => conn.destroy());
    conn.write(post(Q, 'Content-Length: 1048576\r\n'));
    const reply = await conn.reply();
    assert.equal(reply.status, 413);
    assert.match(fault(reply).faultstring, /exceeds the limit of 4096 bytes/);
    await conn.closed();
  });

  it('answers a JSON 408 and closes when headers do not arrive within api_header_timeout', async (t) => {
    const s = await start(t, { api_header_timeout: 0.2, api_body_timeout: 0.4 });
    const reply = await rawRequest(s.port, 'GET /v1/status HTTP/1.1\r\nHost: agent\r\n');
    assert.equal(reply.status, 408);
    assert.equal(fault(reply).error_code, 'REQUEST_TIMEOUT');
    assert.ok(reply.closedAfter);
  });

  it('answers a JSON 408 and closes when a body trickles past api_body_timeout', async (t) => {
    const s = await start(t, { api_header_timeout: 0.2, api_body_timeout: 0.4 });
    const conn = await connectRaw(s.port);
    t.after(() => conn.destroy());
    conn.write(post(Q, 'Content-Length: 100\r\n'));
    const trickle = setInterval(() => conn.write('{'), 100);
    t.after(() => clearInterval(trickle));
    const reply = await conn.reply();
    clearInterval(trickle);
    assert.equal(reply.status, 408);
    assert.equal(fault(reply).error_code, 'REQUEST_TIMEOUT');
    await conn.closed();
    assert.deepEqual(s.executor.list(), []);
  });

  const targets = [`//[?${Q}`, `//[::1?${Q}`, `//a:b@?${Q}`, `http://[?${Q}`, `http://a:b@agent/v1/commands/?${Q}`];
  for (const target of targets) {
    it(`answers 400 with a JSON faultstring for the target ${target.replace(TOKEN, 'T')}, and logs nothing secret`, async (t) => {
      const s = await start(t);
      const reply = await rawRequest(s.port, `GET ${target} HTTP/1.1\r\nHost: agent\r\n\r\n`);
      assert.equal(reply.status, 400);
      const body = fault(reply);
      assert.equal(body.error_code, 'MALFORMED_HTTP_REQUEST');
      assert.ok(!body.faultstring.includes(TOKEN));
      const logged = await s.logText();
      assert.ok(!logged.includes(TOKEN), 'the token was logged');
      assert.ok(!logged.includes('a:b'), 'the credentials were logged');
      // and the server keeps serving
      assert.equal((await rawRequest(s.port, `GET /v1/commands/?${Q} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n`)).status, 200);
    });
  }

  const parserRejections: Array<[string, string, number, string]> = [
    ['a duplicate Content-Length', `${post(Q, 'Content-Length: 2\r\nContent-Length: 2\r\n')}{}`, 400, 'MALFORMED_HTTP_REQUEST'],
    ['Content-Length with Transfer-Encoding', `${post(Q, 'Content-Length: 2\r\nTransfer-Encoding: chunked\r\n')}2\r\n{}\r\n0\r\n\r\n`, 400, 'MALFORMED_HTTP_REQUEST'],
    ['bad chunked encoding', `${post(Q, 'Transfer-Encoding: chunked\r\n')}zz\r\n{}\r\n0\r\n\r\n`, 400, 'MALFORMED_HTTP_REQUEST'],
    ['oversized headers', `GET /v1/status HTTP/1.1\r\nHost: agent\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'REQUEST_HEADERS_TOO_LARGE'],
    ['a bad header line', 'GET /v1/status HTTP/1.1\r\nHost agent\r\n\r\n', 400, 'MALFORMED_HTTP_REQUEST'],
  ];
  for (const [what, request, status, code] of parserRejections) {
    it(`answers ${status} with a JSON faultstring for ${what} refused by the HTTP parser`, async (t) => {
      const s = await start(t);
      const reply = await rawRequest(s.port, request);
      assert.equal(reply.status, status);
      const body = fault(reply);
      assert.equal(body.error_code, code);
      assert.equal(body.faultcode, 'Client');
      assert.ok(reply.closedAfter);
      assert.ok(!(await s.logText()).includes(TOKEN), 'the token was logged');
    });
  }

  it('refuses a JSON body with more entries than api_max_json_entries (413) before parsing it, with a short faultstring', async (t) => {
    const s = await start(t);
    const params = `{"v":{${Array.from({ length: 20_000 }, (_, i) => `"k${i}":1`).join(',')}}}`;
    const body = `{"name":"test.echo","params":${params}}`;
    const reply = await rawRequest(s.port, `${post(Q, `Content-Length: ${body.length}\r\nConnection: close\r\n`)}${body}`);
    assert.equal(reply.status, 413);
    const fault413 = fault(reply);
    assert.equal(fault413.error_code, 'REQUEST_JSON_TOO_COMPLEX');
    assert.ok(fault413.faultstring.length < 300, fault413.faultstring);
    assert.deepEqual(s.executor.list(), []);
    const deep = `{"name":"test.echo","params":{"v":${'['.repeat(100)}${']'.repeat(100)}}}`;
    const deepReply = await rawRequest(s.port, `${post(Q, `Content-Length: ${deep.length}\r\nConnection: close\r\n`)}${deep}`);
    assert.equal(deepReply.status, 413);
    assert.match(fault(deepReply).faultstring, /nested deeper than 64/);
  });
});

describe('API server: connections and requests in flight', () => {
  it('at api_max_connections a new connection is served and the least recently used idle one is closed', async (t) => {
    const s = await start(t, { api_max_connections: 3 });
    const fresh = await connectRaw(s.port); // connected first, never sends a request
    const a = await keptAlive(s.port);
    const b = await keptAlive(s.port);
    t.after(() => { for (const c of [fresh, a, b]) c.destroy(); });
    const c = await keptAlive(s.port); // the cap is reached: `a` (served, idle longest) gives way
    t.after(() => c.destroy());
    await a.closed();
    b.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
    assert.equal((await b.reply()).status, 200);
    // With no served idle connection left but `b` and `c`, the next one closes the one used least recently.
    const d = await keptAlive(s.port);
    t.after(() => d.destroy());
    await c.closed();
    fresh.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
    assert.equal((await fresh.reply()).status, 200, 'the connection that had not been served yet was kept');
  });

  it('never closes a connection with a request in flight: at the cap with none idle, the new connection is refused', async (t) => {
    const s = await start(t, { api_max_connections: 3 });
    const waiting = await waitingConnections(s, 3);
    t.after(() => { for (const c of waiting) c.destroy(); });
    const refused = await connectRaw(s.port);
    t.after(() => refused.destroy());
    await refused.closed();
    s.release();
    for (const conn of waiting) assert.equal((await conn.reply()).status, 200);
    (await keptAlive(s.port)).destroy();
  });

  it('an address at api_max_connections_per_address keeps its polling connections; a newcomer replaces one idle for a second, or is refused', async (t) => {
    const s = await start(t, { api_max_connections: 10, api_max_connections_per_address: 2 });
    const conductor = await keptAlive(s.port, false, '127.0.0.2');
    const a1 = await keptAlive(s.port);
    const a2 = await keptAlive(s.port);
    const conns = [conductor, a1, a2];
    t.after(() => { for (const c of conns) c.destroy(); });
    const early = await connectRaw(s.port); // a1 and a2 were just used: refused
    conns.push(early);
    await early.closed();
    await new Promise((r) => setTimeout(r, 1100));
    const a3 = await keptAlive(s.port); // replaces a1, idle longest
    conns.push(a3);
    await a1.closed();
    const fresh = await connectRaw(s.port); // replaces a2, idle for over a second, then sends nothing
    conns.push(fresh);
    await a2.closed();
    // Left to 127.0.0.1: a3, just used, and a connection on its way to its first request.
    const refused = await connectRaw(s.port);
    conns.push(refused);
    await refused.closed();
    fresh.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
    assert.equal((await fresh.reply()).status, 200);
    conductor.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
    assert.equal((await conductor.reply()).status, 200, 'the other address kept its connection');
  });

  it('at api_max_connections the address holding the most connections gives way', async (t) => {
    const s = await start(t, { api_max_connections: 4, api_max_connections_per_address: 3 });
    const [conductor, a1, a2, a3] = await conductorThenThree(s.port);
    const second = await keptAlive(s.port, false, '127.0.0.2');
    t.after(() => { for (const c of [conductor, a1, a2, a3, second]) c.destroy(); });
    await a1.closed();
    conductor.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
    assert.equal((await conductor.reply()).status, 200);
  });

  it('caps connections over TLS too (TLS sockets are matched to their TCP connection)', async (t) => {
    const s = await start(t, { api_max_connections: 2 }, { tls: true });
    const a = await keptAlive(s.port, true);
    const b = await keptAlive(s.port, true);
    const c = await keptAlive(s.port, true);
    t.after(() => { for (const conn of [a, b, c]) conn.destroy(); });
    await a.closed();
    b.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n');
    assert.equal((await b.reply()).status, 200);
  });

  it('answers 503 with Retry-After beyond api_max_requests requests in flight', async (t) => {
    const s = await start(t, { api_max_requests: 2 });
    const waiting = await waitingConnections(s, 2);
    t.after(() => { for (const c of waiting) c.destroy(); });
    const body = JSON.stringify({ name: 'test.echo', params: { v: 1 } });
    const refused = await rawRequest(s.port, `${post(Q, `Content-Length: ${body.length}\r\n`)}${body}`);
    assert.equal(refused.status, 503);
    assert.equal(fault(refused).error_code, 'API_OVERLOADED');
    assert.equal(refused.headers['retry-after'], '1');
    s.release();
    for (const conn of waiting) assert.equal((await conn.reply()).status, 200);
    assert.equal((await rawRequest(s.port, `${post(Q, `Content-Length: ${body.length}\r\n`)}${body}`)).status, 200);
  });
});
