import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { AgentError } from '../../src/errors.ts';
import { CENSOR, createLogger, redactRecord, SECRET_KEYS, type Logger } from '../../src/log/index.ts';

// A logger writing into an array; `flush()` waits for pino's asynchronous multistream.
function capture(): { log: Logger; records(): Promise<Record<string, unknown>[]>; text(): Promise<string> } {
  const chunks: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { chunks.push(String(chunk)); cb(); } });
  const log = createLogger({ stream, level: 'trace' });
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return {
    log,
    async text() { await settle(); return chunks.join(''); },
    async records() { await settle(); return chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>); },
  };
}

describe('log redaction', () => {
  it('masks every secret key at any depth, in arrays, whatever the case, and leaves the rest', async () => {
    const sink = capture();
    const record = {
      agent_token: 'tok-zero-secret', component: 'api',
      params: { step: { args: { image_source: 'oci://r/x:1', oci_pull_secret: 'pull-secret-one', configdrive: 'H4sI…' } } },
      node: { instance_info: { bootc_authorized_keys: ['ssh-ed25519 AAAA k'] } },
      deep: { a: { b: { c: { d: { e: { password: 'pw-six-secret' } } } } } },
      headers: [{ Authorization: 'Bearer B' }, { 'Proxy-Authorization': 'Basic Q' }],
      auths: { 'quay.io': { auth: 'dXNlcjpwYXNz', identitytoken: 'I' } },
      empty: { token: '' }, nothing: { password: null },
    };
    sink.log.info(record, 'request');
    const [line] = await sink.records();
    assert.deepEqual(line!['agent_token'], CENSOR);
    assert.equal(line!['component'], 'api');
    assert.deepEqual(line!['params'], { step: { args: { image_source: 'oci://r/x:1', oci_pull_secret: CENSOR, configdrive: CENSOR } } });
    assert.deepEqual(line!['node'], { instance_info: { bootc_authorized_keys: CENSOR } });
    assert.deepEqual(line!['deep'], { a: { b: { c: { d: { e: { password: CENSOR } } } } } });
    assert.deepEqual(line!['headers'], [{ Authorization: CENSOR }, { 'Proxy-Authorization': CENSOR }]);
    assert.deepEqual(line!['auths'], { 'quay.io': { auth: CENSOR, identitytoken: CENSOR } });
    assert.deepEqual(line!['empty'], { token: '' });
    assert.deepEqual(line!['nothing'], { password: null });
    const text = await sink.text();
    for (const secret of ['tok-zero-secret', 'pull-secret-one', 'H4sI', 'AAAA', 'pw-six-secret', 'Bearer B', 'Basic Q', 'dXNlcjpwYXNz']) assert.ok(!text.includes(secret), `${secret} leaked`);
    // The caller's object is not modified.
    assert.equal(record.params.step.args.oci_pull_secret, 'pull-secret-one');
    assert.deepEqual(record.headers[0], { Authorization: 'Bearer B' });
  });

  it('serializes errors (type, message, code, details, cause) and masks secrets in them', async () => {
    const sink = capture();
    const cause = Object.assign(new Error('inner'), { token: 'tok-inner-secret' });
    const err = new AgentError('IMAGE_PULL_FAILED', 'pull failed', { details: { argv: ['podman', 'pull'], password: 'pw-one-secret' }, cause });
    sink.log.error({ err, nested: { error: new AgentError('INTERNAL', 'x', { details: { secret: 'secret-two' } }) } }, 'deploy failed');
    sink.log.error(new AgentError('INTERNAL', 'direct', { details: { auth: 'auth-three-secret' } }));
    const [first, second] = await sink.records();
    const e = first!['err'] as Record<string, unknown>;
    assert.equal(e['type'], 'AgentError');
    assert.equal(e['code'], 'IMAGE_PULL_FAILED');
    assert.match(String(e['message']), /pull failed/);
    assert.match(String(e['stack']), /AgentError: pull failed/);
    assert.deepEqual(e['details'], { argv: ['podman', 'pull'], password: CENSOR });
    assert.deepEqual((first!['nested'] as Record<string, Record<string, unknown>>)['error']!['details'], { secret: CENSOR });
    assert.deepEqual((second!['err'] as Record<string, unknown>)['details'], { auth: CENSOR });
    const text = await sink.text();
    for (const secret of ['pw-one-secret', 'tok-inner-secret', 'secret-two', 'auth-three-secret']) assert.ok(!text.includes(secret), `${secret} leaked`);
  });

  it('masks secrets in child and grandchild bindings', async () => {
    const sink = capture();
    const child = sink.log.child({ component: 'conductor', agent_token: 'tok-one-secret' });
    child.child({ request: { headers: { authorization: 'Bearer tok-two-secret' } } }).info('heartbeat');
    const [line] = await sink.records();
    assert.equal(line!['component'], 'conductor');
    assert.equal(line!['agent_token'], CENSOR);
    assert.deepEqual(line!['request'], { headers: { authorization: CENSOR } });
    assert.ok(!(await sink.text()).includes('tok-one-secret'));
  });

  it('survives cycles, very deep records, buffers, dates and maps', async () => {
    const sink = capture();
    const cyclic: Record<string, unknown> = { name: 'loop', password: 'pw-cyclic-secret' };
    cyclic['self'] = cyclic;
    let deep: Record<string, unknown> = { token: 'tok-bottom-secret' };
    for (let i = 0; i < 30; i++) deep = { next: deep };
    sink.log.info({ cyclic, deep, buf: Buffer.from('abc'), when: new Date(0), map: new Map([['token', 'x']]) }, 'odd shapes');
    const [line] = await sink.records();
    assert.deepEqual(line!['cyclic'], { name: 'loop', password: CENSOR, self: '[circular]' });
    assert.ok(!(await sink.text()).includes('tok-bottom-secret'), 'a subtree deeper than the walk goes is replaced, not printed');
    assert.deepEqual(line!['buf'], { type: 'Buffer', data: [97, 98, 99] });
    assert.equal(line!['when'], '1970-01-01T00:00:00.000Z');
  });

  it('returns the very same object when there is nothing to hide', () => {
    const record = { a: 1, b: { c: [1, 2, { d: 'x' }] } };
    assert.equal(redactRecord(record), record);
    assert.ok(SECRET_KEYS.includes('oci_pull_secret') && SECRET_KEYS.includes('agent_token'));
  });

  it('bounds every record: long strings, keys and items beyond a count, a long message; secrets still masked', async () => {
    const sink = capture();
    const many: Record<string, number> = {};
    for (let i = 0; i < 1_000_000; i++) many[`key${i}`] = i;
    const huge = 'x'.repeat(13 * 2 ** 20);
    sink.log.info({ params: many, blob: huge, list: Array.from({ length: 100_000 }, (_, i) => i), token: 'tok-bounded-secret', err: new Error(huge) }, `request ${huge}`);
    const text = await sink.text();
    assert.ok(text.length < 128 * 1024, `a ${text.length}-byte log line`);
    const [line] = await sink.records();
    assert.equal(line!['token'], CENSOR);
    assert.match(String(line!['blob']), /^x+…\[\d+ more characters\]$/);
    assert.match(String(line!['msg']), /^request x+…\[\d+ more characters\]$/);
    const params = line!['params'] as Record<string, unknown>;
    assert.equal(params['key0'], 0);
    assert.ok(Object.keys(params).length < 1000);
    assert.match(String(params['…']), /more keys not logged/);
    const list = line!['list'] as unknown[];
    assert.ok(list.length < 1000);
    assert.match(String(list.at(-1)), /more items not logged/);
    assert.ok(!text.includes('tok-bounded-secret'));
  });

  it('keeps ordinary records whole', async () => {
    const sink = capture();
    const record = { path: '/v1/commands/', list: Array.from({ length: 50 }, (_, i) => ({ i, name: `n${i}` })), text: 'y'.repeat(4000) };
    assert.equal(redactRecord(record), record);
    sink.log.info(record, 'ordinary');
    const [line] = await sink.records();
    assert.deepEqual(line!['list'], record.list);
    assert.equal(line!['text'], record.text);
  });

  it('creates the log file with mode 0600, and makes an existing one 0600', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-log-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const fresh = join(dir, 'new', 'agent.log');
    const log = createLogger({ file: fresh, stream: new Writable({ write(_c, _e, cb) { cb(); } }) });
    log.info('hello');
    assert.equal((await stat(fresh)).mode & 0o777, 0o600);
    const existing = join(dir, 'old.log');
    await writeFile(existing, 'earlier line\n', { mode: 0o644 });
    createLogger({ file: existing, stream: new Writable({ write(_c, _e, cb) { cb(); } }) }).info('appended');
    assert.equal((await stat(existing)).mode & 0o777, 0o600);
    await new Promise((r) => setTimeout(r, 50));
    assert.match(await readFile(existing, 'utf8'), /^earlier line\n/);
  });
});
