import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { createIronicClient, type IronicClientConfig, type IronicClientOptions } from '../../src/conductor/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { startFakeConductor, type FakeConductor, type FakeConductorOptions } from '../helpers/fake-conductor.ts';

const MAC = '52:54:00:12:34:56';
const CALLBACK = 'https://192.0.2.10:9999';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function baseConfig(apiUrls: string[]): IronicClientConfig {
  return { api_url: apiUrls, insecure: false, global_request_id: 'req-0b8e2d2a-5d3c-4c7e-9e0f-3b7c2f6a1d11', http_request_timeout: 5, lookup_timeout: 600, lookup_interval: 1 };
}

async function setup(t: TestContext, fake: FakeConductorOptions = {}, extra: Omit<Partial<IronicClientOptions>, 'config'> & { config?: Partial<IronicClientConfig> } = {}) {
  const conductor = await startFakeConductor(fake);
  const sleeps: number[] = [];
  let now = 0;
  const client = createIronicClient({
    log: createSilentLogger(),
    agentVersion: '0.1.0',
    clock: { now: () => now },
    random: () => 0.5,
    sleep: async (ms) => { sleeps.push(ms); now += ms; },
    ...extra,
    config: { ...baseConfig([conductor.url]), ...extra.config },
  });
  t.after(async () => { await client.close(); await conductor.close(); });
  return { conductor, client, sleeps };
}

// A port nothing listens on: bind, read the port, close.
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

const lastHeartbeat = (c: FakeConductor) => c.heartbeats.at(-1)!;

describe('Ironic client: version discovery and lookup', () => {
  it('discovers 1.96 and looks up with version 1.62, the MACs and every common header', async (t) => {
    const { conductor, client } = await setup(t);
    const versions = await client.discoverApiVersion();
    assert.equal(versions.server, '1.96');
    const found = await client.lookup({ macs: [MAC, 'AA:BB:CC:DD:EE:FF'] });
    assert.equal(found.node.uuid, conductor.nodeUuid);
    assert.equal(found.token, conductor.token);
    assert.equal(found.token?.length, 43);
    assert.equal(found.tokenSource, 'lookup');
    assert.equal(found.config.heartbeat_timeout, 300);
    assert.equal(found.config.tls_min_version, '1.3');
    const [root, lookup] = conductor.requests;
    assert.equal(root?.path, '/');
    assert.equal(lookup?.query.addresses, `${MAC},AA:BB:CC:DD:EE:FF`);
    assert.equal(lookup?.query.node_uuid, undefined);
    assert.equal(lookup?.headers['x-openstack-ironic-api-version'], '1.62');
    assert.equal(lookup?.headers.accept, 'application/json');
    assert.equal(lookup?.headers['content-type'], undefined);
    assert.equal(lookup?.headers['x-openstack-request-id'], 'req-0b8e2d2a-5d3c-4c7e-9e0f-3b7c2f6a1d11');
    assert.equal(lookup?.headers['user-agent'], 'bootc-agent/0.1.0');
  });

  it('uses a pinned ironic_api_version without asking the server', async (t) => {
    const { conductor, client } = await setup(t, {}, { config: { ironic_api_version: '1.68' } });
    await client.lookup({ macs: [MAC], nodeUuid: undefined });
    assert.deepEqual(conductor.requests.map((r) => r.path), ['/v1/lookup']);
    assert.equal(client.versions?.pinned, true);
  });

  it('keeps the token it has when the conductor masks it, and refuses to go on without one', async (t) => {
    const { conductor, client } = await setup(t, { tokenAlreadyIssued: true });
    const known = 'k'.repeat(43);
    const found = await client.lookup({ macs: [MAC], knownToken: known });
    assert.equal(found.token, known);
    assert.equal(found.tokenSource, 'known');
    await assert.rejects(client.lookup({ macs: [MAC] }), { code: 'LOOKUP_TOKEN_MISSING' });
    assert.equal(conductor.lookups.length, 2);
  });

  it('a second lookup gets "******": only an agent that kept the first token can go on', async (t) => {
    const { client, conductor } = await setup(t);
    const first = await client.lookup({ macs: [MAC] });
    await assert.rejects(client.lookup({ macs: [MAC] }), { code: 'LOOKUP_TOKEN_MISSING', message: /masked/ });
    assert.equal((await client.lookup({ macs: [MAC], knownToken: first.token })).token, conductor.token);
  });

  it('refuses a token shorter than 32 characters', async (t) => {
    const { client } = await setup(t, { config: { agent_token: 'only-twenty-chars-xx' } });
    await assert.rejects(client.lookup({ macs: [MAC] }), { code: 'LOOKUP_TOKEN_MISSING', message: /20 characters/ });
  });

  it('retries 404 and 409 with jittered exponential back-off, pausing longer while the node is locked', async (t) => {
    const { client, conductor, sleeps } = await setup(t, { lookupScript: [404, 404, 404, 409, 409] });
    const found = await client.lookup({ macs: [MAC] });
    assert.equal(found.token, conductor.token);
    assert.equal(conductor.lookups.length, 6);
    // random() = 0.5: 1 s, then between 1 s and 2 s, 4 s, …; 409 → at least 5 s, then 10 s.
    assert.deepEqual(sleeps, [1000, 1500, 2500, 5000, 10_000]);
  });

  it('gives up with LOOKUP_FAILED once lookup_timeout has passed', async (t) => {
    const { client, conductor, sleeps } = await setup(t, { lookupScript: new Array(100).fill(404) }, { config: { lookup_timeout: 30 } });
    await assert.rejects(client.lookup({ macs: [MAC] }), (err: { code: string; details: { attempts: number; status: number } }) => {
      assert.equal(err.code, 'LOOKUP_FAILED');
      assert.equal(err.details.status, 404);
      return true;
    });
    assert.equal(sleeps.reduce((a, b) => a + b, 0), 30_000);
    assert.ok(sleeps.every((s) => s <= 60_000));
    assert.equal(conductor.lookups.length, sleeps.length + 1);
  });

  it('fails at once on a status that retrying cannot fix', async (t) => {
    const { client, sleeps } = await setup(t, { lookupScript: [403] });
    await assert.rejects(client.lookup({ macs: [MAC] }), { code: 'LOOKUP_FAILED', message: /refused.*HTTP 403/ });
    assert.deepEqual(sleeps, []);
  });

  it('retries while the API is unreachable, then sticks to the URL that answered', async (t) => {
    const dead = await deadUrl();
    const conductor = await startFakeConductor();
    const sleeps: number[] = [];
    const client = createIronicClient({
      log: createSilentLogger(), agentVersion: '0.1.0', random: () => 0, sleep: async (ms) => { sleeps.push(ms); },
      config: baseConfig([dead, conductor.url]),
    });
    t.after(async () => { await client.close(); await conductor.close(); });
    assert.equal(client.apiUrl, dead);
    await client.lookup({ macs: [MAC] });
    assert.equal(client.apiUrl, conductor.url);
    assert.deepEqual(sleeps, []);

    const onlyDead = createIronicClient({
      log: createSilentLogger(), agentVersion: '0.1.0', random: () => 0, sleep: async () => undefined,
      config: { ...baseConfig([dead]), lookup_timeout: 0.001 },
    });
    t.after(() => onlyDead.close());
    await assert.rejects(onlyDead.lookup({ macs: [MAC] }), { code: 'LOOKUP_FAILED', message: /could not be reached/ });
  });

  it('retries version discovery inside the lookup loop when GET / fails at first', async (t) => {
    const { conductor, client, sleeps } = await setup(t, { rootScript: [503, 502] });
    const found = await client.lookup({ macs: [MAC] });
    assert.equal(found.node.uuid, conductor.nodeUuid);
    assert.deepEqual(conductor.requests.map((r) => r.path), ['/', '/', '/', '/v1/lookup']);
    assert.equal(sleeps.length, 2);
  });

  it('stops retrying when its signal aborts', async (t) => {
    const controller = new AbortController();
    const { client } = await setup(t, { lookupScript: [404, 404] }, { sleep: async () => controller.abort() });
    await assert.rejects(client.lookup({ macs: [MAC], signal: controller.signal }), { code: 'CANCELLED' });
  });
});

describe('Ironic client: heartbeats', () => {
  it('at 1.96 sends callback_url, agent_token, agent_version and agent_verify_ca with version 1.68', async (t) => {
    const { client, conductor } = await setup(t);
    const { token } = await client.lookup({ macs: [MAC] });
    await client.heartbeat({ nodeUuid: conductor.nodeUuid, callbackUrl: CALLBACK, token, verifyCaPem: PEM });
    const hb = lastHeartbeat(conductor);
    assert.equal(hb.status, 202);
    assert.equal(hb.headers['x-openstack-ironic-api-version'], '1.68');
    assert.equal(hb.headers['content-type'], 'application/json');
    assert.equal(hb.headers.accept, 'application/json');
    assert.deepEqual(hb.body, { callback_url: CALLBACK, agent_token: conductor.token, agent_version: '0.1.0', agent_verify_ca: PEM });
    assert.equal(conductor.agentUrl, CALLBACK);
    assert.equal(conductor.agentVerifyCa, PEM);
  });

  it('adds agent_status fields with version 1.72 when the server has it', async (t) => {
    const { client, conductor } = await setup(t);
    const { token } = await client.lookup({ macs: [MAC] });
    await client.heartbeat({ nodeUuid: conductor.nodeUuid, callbackUrl: CALLBACK, token, verifyCaPem: PEM, status: 'start', statusMessage: 'pulling image' });
    const hb = lastHeartbeat(conductor);
    assert.equal(hb.status, 202);
    assert.equal(hb.headers['x-openstack-ironic-api-version'], '1.72');
    assert.equal((hb.body as Record<string, string>).agent_status, 'start');
    assert.equal(conductor.agentStatusMessage, 'pulling image');
  });

  it('against an old 1.65 server: no agent_status, no agent_verify_ca, version 1.65', async (t) => {
    const { client, conductor } = await setup(t, { maxVersion: '1.65', requireTls: false });
    const { token } = await client.lookup({ macs: [MAC] });
    assert.equal(conductor.lookups[0]?.headers['x-openstack-ironic-api-version'], '1.62');
    assert.equal(client.versions?.supportsVerifyCa, false);
    await client.heartbeat({ nodeUuid: conductor.nodeUuid, callbackUrl: 'http://192.0.2.10:9999', token, verifyCaPem: PEM, status: 'end', statusMessage: 'done' });
    const hb = lastHeartbeat(conductor);
    assert.equal(hb.status, 202, hb.error);
    assert.equal(hb.headers['x-openstack-ironic-api-version'], '1.65');
    assert.deepEqual(Object.keys(hb.body as object).sort(), ['agent_token', 'agent_version', 'callback_url']);
  });

  it('maps refusals to HEARTBEAT_FAILED with the status and Ironic\'s faultstring', async (t) => {
    const { client, conductor } = await setup(t);
    const { token } = await client.lookup({ macs: [MAC] });
    const beat = (over: Partial<Parameters<typeof client.heartbeat>[0]> = {}) =>
      client.heartbeat({ nodeUuid: conductor.nodeUuid, callbackUrl: CALLBACK, token, verifyCaPem: PEM, ...over });
    await assert.rejects(beat({ token: 'w'.repeat(43) }), { code: 'HEARTBEAT_FAILED', details: { status: 400, error: 'Invalid or missing agent token received.', conflict: false } });
    await assert.rejects(beat({ callbackUrl: 'http://192.0.2.10:9999' }), { code: 'HEARTBEAT_FAILED', message: /HTTP 400: TLS is required/ });
    await beat();
    await assert.rejects(beat({ callbackUrl: 'https://192.0.2.99:9999' }), { message: /Detected change in ramdisk provided "callback_url"/ });
    await assert.rejects(beat({ verifyCaPem: `${PEM}x` }), { message: /agent_verify_ca/ });
    conductor.failHeartbeats(1, 409, 'Node is locked by host conductor-1');
    await assert.rejects(beat(), { code: 'HEARTBEAT_FAILED', details: { status: 409, error: 'Node is locked by host conductor-1', conflict: true } });
    await assert.rejects(client.heartbeat({ nodeUuid: 'other-node', callbackUrl: CALLBACK, token }), { code: 'HEARTBEAT_FAILED', message: /HTTP 404: Node could not be found/ });
    await beat();
  });

  it('reports an unreachable API as HEARTBEAT_FAILED', async (t) => {
    const client = createIronicClient({ log: createSilentLogger(), agentVersion: '0.1.0', config: { ...baseConfig([await deadUrl()]), ironic_api_version: '1.68' } });
    t.after(() => client.close());
    await assert.rejects(client.heartbeat({ nodeUuid: 'n', callbackUrl: CALLBACK, token: 't'.repeat(43) }), { code: 'HEARTBEAT_FAILED', details: { reason: 'unreachable' } });
  });
});
