// The whole ramdisk → conductor path on real sockets, in the composition-root order:
// state → discover version → lookup → advertise/cert → HTTPS listen → heartbeats; then an
// agent restart within the same boot, which must present the same token, URL and certificate.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  buildCallbackUrl, createHeartbeater, createIronicClient, findAdvertiseAddress, type IronicClientConfig,
} from '../../src/conductor/index.ts';
import type { CommandRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createStateStore, loadOrCreateCertificate } from '../../src/state/index.ts';
import { generateSelfSignedCertificate } from '../../src/tls/index.ts';
import { startFakeConductor } from '../helpers/fake-conductor.ts';

const MAC = '52:54:00:12:34:56';
const log = createSilentLogger();
const noRunner: CommandRunner = { run: async () => { throw new Error('no command expected'); } };

const clientConfig = (url: string, over: Partial<IronicClientConfig> = {}): IronicClientConfig => ({
  api_url: [url], insecure: false, http_request_timeout: 5, lookup_timeout: 600, lookup_interval: 1, ...over,
});

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// A stand-in for the agent API: enough to show the conductor can call back over TLS 1.3.
async function listenAgent(cert: { certPem: string; keyPem: string }, token: string, port = 0): Promise<Server> {
  const server = createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.3' }, (req, res) => {
    const ok = new URL(req.url ?? '/', 'https://agent').searchParams.get('agent_token') === token;
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(ok ? { commands: [] } : { faultcode: 'Client', faultstring: '401 Unauthorized: Token invalid.' }));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

const closeServer = (s: Server) => new Promise<void>((resolve) => { s.closeAllConnections(); s.close(() => resolve()); });

// One agent run inside the ramdisk, returning what it advertised.
async function runAgent(stateDir: string, apiUrl: string, port = 0) {
  const store = createStateStore(stateDir);
  const client = createIronicClient({ config: clientConfig(apiUrl), log, agentVersion: '0.1.0' });
  const versions = await client.discoverApiVersion();
  assert.ok(versions.supportsVerifyCa);
  const found = await client.lookup({ macs: [MAC], knownToken: await store.readToken() });
  assert.ok(found.token);
  await store.writeToken(found.token);
  await store.writeNode(found.node.uuid, found.node, found.config);
  const host = await findAdvertiseAddress({ config: { advertise_host: '127.0.0.1', api_url: [apiUrl], ip_lookup_attempts: 1, ip_lookup_sleep: 0 }, runner: noRunner, log });
  const cert = await loadOrCreateCertificate(store, { advertiseHost: host, log });
  const server = await listenAgent(cert, found.token, port);
  const callbackUrl = buildCallbackUrl('https', host, (server.address() as AddressInfo).port);
  await store.writeCallbackUrl(callbackUrl);
  const heartbeater = createHeartbeater({
    client, log,
    getState: () => ({ nodeUuid: found.node.uuid, callbackUrl, token: found.token, verifyCaPem: cert.certPem, heartbeatTimeout: found.config.heartbeat_timeout }),
  });
  return {
    found, cert, callbackUrl, heartbeater,
    async stop() {
      await heartbeater.stop();
      await client.close();
      await closeServer(server);
    },
  };
}

describe('ramdisk ↔ conductor end to end', () => {
  it('looks up, serves HTTPS with its own certificate, heartbeats, and is called back; a restart keeps everything', async (t) => {
    const conductor = await startFakeConductor({ requireTls: true });
    t.after(() => conductor.close());
    const stateDir = await tempDir(t);

    const first = await runAgent(stateDir, conductor.url);
    const beat = conductor.nextHeartbeat();
    first.heartbeater.start();
    const hb = await beat;
    assert.equal(hb.status, 202, hb.error);
    assert.equal(conductor.agentUrl, first.callbackUrl);
    assert.equal(conductor.agentVerifyCa, first.cert.certPem);
    assert.deepEqual(await conductor.callAgent({ path: '/v1/commands/' }), { status: 200, body: { commands: [] } });
    assert.equal((await conductor.callAgent({ path: '/v1/commands/', withoutToken: true })).status, 401);
    const port = Number(new URL(first.callbackUrl).port);
    await first.stop();

    // Restart: lookup now answers "******"; the persisted token, certificate and port carry on.
    const second = await runAgent(stateDir, conductor.url, port);
    t.after(() => second.stop());
    assert.equal(second.found.tokenSource, 'known');
    assert.equal(second.cert.reused, true);
    assert.equal(second.callbackUrl, first.callbackUrl);
    const again = conductor.nextHeartbeat();
    second.heartbeater.start();
    assert.equal((await again).status, 202, (await again).error);
    assert.equal(conductor.acceptedHeartbeats.length, 2);
    assert.equal((await conductor.callAgent({ path: '/v1/commands/' })).status, 200);
  });
});

describe('HTTPS to the Ironic API', () => {
  it('trusts ca_file in addition to the system CAs, refuses an unknown CA, and skips checks when insecure', async (t) => {
    const tls = generateSelfSignedCertificate({ ipAddresses: ['127.0.0.1'], commonName: 'ironic' });
    const conductor = await startFakeConductor({ tls });
    t.after(() => conductor.close());
    const caFile = join(await tempDir(t), 'ironic-ca.pem');
    await writeFile(caFile, tls.certPem);

    const trusted = createIronicClient({ config: clientConfig(conductor.url, { ca_file: caFile }), log, agentVersion: '0.1.0' });
    t.after(() => trusted.close());
    assert.equal((await trusted.lookup({ macs: [MAC] })).node.uuid, conductor.nodeUuid);

    const untrusted = createIronicClient({ config: clientConfig(conductor.url), log, agentVersion: '0.1.0' });
    t.after(() => untrusted.close());
    await assert.rejects(untrusted.discoverApiVersion(), { code: 'CONDUCTOR_PROTOCOL', message: /could not be reached.*(self[- ]signed|certificate)/i });

    const insecure = createIronicClient({ config: clientConfig(conductor.url, { insecure: true }), log, agentVersion: '0.1.0' });
    t.after(() => insecure.close());
    assert.equal((await insecure.discoverApiVersion()).server, '1.96');

    assert.throws(() => createIronicClient({ config: clientConfig(conductor.url, { ca_file: join(caFile, 'missing') }), log, agentVersion: '0' }), { code: 'CONFIG_INVALID' });
    assert.throws(() => createIronicClient({ config: { ...clientConfig(conductor.url), api_url: [] }, log, agentVersion: '0' }), { code: 'CONFIG_INVALID' });
  });
});
