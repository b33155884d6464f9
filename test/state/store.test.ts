import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { createStateStore, STATE_FILES } from '../../src/state/index.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;
const TOKEN = 'a'.repeat(43);

describe('state store', () => {
  it('reads nothing before anything was written, without creating the directory', async (t) => {
    const dir = join(await tempDir(t), 'run', 'bootc-agent');
    const store = createStateStore(dir);
    assert.equal(await store.readToken(), undefined);
    assert.equal(await store.readCallbackUrl(), undefined);
    assert.equal(await store.readCertificate(), undefined);
    assert.equal(await store.readNode(), undefined);
    await assert.rejects(stat(dir), { code: 'ENOENT' });
  });

  it('creates the directory 0700 and files 0600, and reads back what it wrote', async (t) => {
    const dir = join(await tempDir(t), 'nested', 'state');
    const store = createStateStore(dir);
    await store.writeToken(TOKEN);
    await store.writeCallbackUrl('https://[2001:db8::10]:9999');
    await store.writeCertificate({ certPem: 'CERT', keyPem: 'KEY' });
    assert.equal(await mode(dir), 0o700);
    for (const file of [STATE_FILES.token, STATE_FILES.callbackUrl, STATE_FILES.certificate, STATE_FILES.key]) {
      assert.equal(await mode(join(dir, file)), 0o600, file);
    }
    assert.equal(await store.readToken(), TOKEN);
    assert.equal(await store.readCallbackUrl(), 'https://[2001:db8::10]:9999');
    assert.deepEqual(await store.readCertificate(), { certPem: 'CERT', keyPem: 'KEY' });
    // A second store on the same directory (an agent restart) sees the same state.
    assert.equal(await createStateStore(dir).readToken(), TOKEN);
  });

  it('tightens an existing directory to 0700', async (t) => {
    const dir = join(await tempDir(t), 'loose');
    await mkdir(dir, { mode: 0o755 });
    await chmod(dir, 0o755);
    await createStateStore(dir).writeToken(TOKEN);
    assert.equal(await mode(dir), 0o700);
  });

  it('replaces files atomically and leaves no temporary files behind', async (t) => {
    const dir = await tempDir(t);
    const store = createStateStore(dir);
    await store.writeToken('b'.repeat(40));
    await store.writeToken(TOKEN);
    assert.equal(await readFile(join(dir, STATE_FILES.token), 'utf8'), `${TOKEN}\n`);
    assert.deepEqual(await readdir(dir), [STATE_FILES.token]);
  });

  it('keeps node.json without the token, and ignores a corrupt one', async (t) => {
    const dir = await tempDir(t);
    const store = createStateStore(dir);
    await store.writeNode('1be26c0b-03f2-4d2e-ae87-c02d7f33c123', { uuid: '1be26c0b-03f2-4d2e-ae87-c02d7f33c123', instance_info: {} }, { heartbeat_timeout: 300, agent_token: TOKEN });
    const node = await store.readNode();
    assert.equal(node?.node_uuid, '1be26c0b-03f2-4d2e-ae87-c02d7f33c123');
    assert.deepEqual(node?.config, { heartbeat_timeout: 300, agent_token: '******' });
    assert.ok(!(await readFile(join(dir, STATE_FILES.node), 'utf8')).includes(TOKEN));
    await writeFile(join(dir, STATE_FILES.node), '{ not json');
    assert.equal(await store.readNode(), undefined);
    await writeFile(join(dir, STATE_FILES.node), '{"node_uuid": 3}');
    assert.equal(await store.readNode(), undefined);
  });

  it('treats a blank token file as no token, and clear() removes everything', async (t) => {
    const dir = await tempDir(t);
    const store = createStateStore(dir);
    await store.writeToken(TOKEN);
    await writeFile(join(dir, STATE_FILES.token), '\n');
    assert.equal(await store.readToken(), undefined);
    await store.writeCallbackUrl('https://192.0.2.10:9999');
    await store.clear();
    assert.deepEqual(await readdir(dir), []);
  });

  it('reports an unusable state directory as an AgentError', async (t) => {
    const base = await tempDir(t);
    await writeFile(join(base, 'file'), 'x');
    await assert.rejects(createStateStore(join(base, 'file', 'sub')).writeToken(TOKEN), { code: 'INTERNAL', message: /cannot be created/ });
  });
});
