// createAgent, the composition root, on real sockets: version discovery → lookup → HTTPS API →
// heartbeats, the fake conductor calling the command API back over TLS trusting only the
// agent's agent_verify_ca, progress in agent_status_message, persistence across a restart,
// and the machine commands with an injected power controller.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Agent as UndiciAgent, request } from 'undici';
import { inspectCertificate, certificateCoversHost } from '../../src/tls/index.ts';
import { startFakeConductor, type FakeConductor } from '../helpers/fake-conductor.ts';
import {
  AGENT_VERSION, createGatedStep, createRecordingPower, echoStep, eventually, executeDeployStep, heartbeatsQuiet, MACS, startTestAgent, tempDir,
} from './harness.ts';

// Replies are checked field by field below; a loose type keeps the assertions readable.
type Json = Record<string, any>;

const REQUEST_ID = 'req-00000000-1111-2222-3333-444444444444';
const NODE = { node: { uuid: 'n', properties: {}, instance_info: {}, driver_internal_info: {} }, ports: [] };

async function post(conductor: FakeConductor, body: unknown, wait: boolean) {
  return conductor.callAgent({ path: '/v1/commands/', query: { wait: String(wait) }, body });
}

describe('createAgent: start-up against a fake conductor', () => {
  it('discovers the API version, looks up with every MAC and the request headers, then heartbeats as soon as it listens', async (t) => {
    const conductor = await startFakeConductor({ macs: [MACS[1]!] });
    t.after(() => conductor.close());
    const { agent } = await startTestAgent(t, { conductor, noStart: true });
    const firstBeat = conductor.nextHeartbeat(5000);
    await agent.start();
    const listening = Date.now();
    const hb = await firstBeat;

    const [versions, lookup] = conductor.requests;
    assert.equal(versions?.method, 'GET');
    assert.equal(versions?.path, '/');
    assert.equal(lookup?.path, '/v1/lookup');
    assert.equal(lookup?.query.addresses, MACS.join(','));
    assert.equal(lookup?.headers['x-openstack-ironic-api-version'], '1.62');
    assert.equal(lookup?.status, 200);
    for (const r of conductor.requests) {
      assert.equal(r.headers['x-openstack-request-id'], REQUEST_ID, `${r.method} ${r.path} lacks the request id`);
      assert.match(String(r.headers.accept), /application\/json/);
    }

    assert.equal(hb.status, 202, hb.error);
    assert.ok(hb.at - listening < 1500, `first heartbeat ${hb.at - listening} ms after listen`);
    assert.equal(hb.headers['x-openstack-ironic-api-version'], '1.68');
    const body = hb.body as Json;
    assert.deepEqual(Object.keys(body).sort(), ['agent_token', 'agent_verify_ca', 'agent_version', 'callback_url']);
    assert.equal(body.callback_url, `https://127.0.0.1:${agent.listenPort}`);
    assert.equal(body.callback_url, agent.callbackUrl);
    assert.equal(body.agent_token, conductor.token);
    assert.equal(agent.token, conductor.token);
    assert.equal(body.agent_version, AGENT_VERSION);
    assert.equal(body.agent_verify_ca, agent.certificatePem);
    const info = inspectCertificate(body.agent_verify_ca as string);
    assert.ok(certificateCoversHost(info, '127.0.0.1'), 'certificate SAN names the advertised IP');
    assert.equal(conductor.agentUrl, agent.callbackUrl);
  });
});

describe('createAgent: the command API as the conductor uses it', () => {
  it('answers over TLS 1.3 to a client trusting only agent_verify_ca, and refuses other clients and bad tokens', async (t) => {
    const { conductor, agent } = await startTestAgent(t);
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');

    assert.deepEqual(await conductor.callAgent({ path: '/v1/commands/' }), { status: 200, body: { commands: [] } });

    // No trust in the agent's CA: the handshake fails. TLS 1.2 only: refused (lookup said 1.3).
    const url = `${agent.callbackUrl}/v1/commands/?agent_token=${conductor.token}`;
    await assert.rejects(request(url), /self[- ]signed|certificate/i);
    const tls12 = new UndiciAgent({ connect: { ca: agent.certificatePem, maxVersion: 'TLSv1.2' } });
    t.after(() => tls12.close());
    await assert.rejects(request(url, { dispatcher: tls12 }), (err: Error & { code?: string }) => /protocol|version|alert/i.test(`${err.code} ${err.message}`));

    for (const call of [
      { path: '/v1/commands/', withoutToken: true },
      { path: '/v1/commands/', withoutToken: true, query: { agent_token: 'x'.repeat(43) } },
      { path: '/v1/commands/', withoutToken: true, body: { name: 'deploy.get_deploy_steps', params: NODE } },
      { path: '/v1/commands/some-id', withoutToken: true },
    ]) {
      const res = await conductor.callAgent(call);
      assert.equal(res.status, 401, JSON.stringify(call));
      assert.equal((res.body as Json).faultstring, '401 Unauthorized: Token invalid.');
    }
    // Unauthenticated endpoints stay open, as in IPA.
    const status = await conductor.callAgent({ path: '/v1/status', withoutToken: true });
    assert.equal(status.status, 200);
    assert.equal((status.body as Json).version, AGENT_VERSION);
  });

  it('lists steps, runs a step, refuses a second command with 409, blocks on ?wait=true, and forces a heartbeat when done', async (t) => {
    const gated = createGatedStep();
    const { conductor } = await startTestAgent(t, { extraSteps: [gated.definition, echoStep] });
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');

    const deploySteps = await post(conductor, { name: 'deploy.get_deploy_steps', params: NODE }, true);
    assert.equal(deploySteps.status, 200);
    const ds = deploySteps.body as Json;
    assert.equal(ds.command_name, 'get_deploy_steps');
    assert.equal(ds.command_status, 'SUCCEEDED');
    assert.equal(ds.command_error, null);
    assert.deepEqual(Object.keys(ds).sort(), ['command_error', 'command_name', 'command_result', 'command_status', 'id']);
    const managers = ds.command_result.deploy_steps as Record<string, Json[]>;
    const [manager] = Object.keys(managers);
    const names = managers[manager!]!.map((s) => s.step).sort();
    for (const name of ['execute_bootc_install', 'test_echo', 'test_gated']) assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
    for (const s of managers[manager!]!) {
      assert.equal(s.interface, 'deploy');
      assert.equal(typeof s.priority, 'number');
    }
    assert.deepEqual(ds.command_result.hardware_manager_version, { bootc_agent_hardware_manager: '1.0' });

    const cleanSteps = (await post(conductor, { name: 'clean.get_clean_steps', params: NODE }, true)).body as Json;
    const clean = Object.values(cleanSteps.command_result.clean_steps as Record<string, Json[]>)[0]!;
    assert.deepEqual(clean.map((s) => [s.step, s.priority]), [['erase_devices_metadata', 99]]);

    // A quick step with wait=true: the reply is the finished result.
    const echoed = (await post(conductor, executeDeployStep('test_echo', { a: 1 }), true)).body as Json;
    assert.equal(echoed.command_status, 'SUCCEEDED', JSON.stringify(echoed.command_error));
    assert.equal(echoed.command_name, 'execute_deploy_step');
    assert.deepEqual(echoed.command_result.deploy_step, { interface: 'deploy', step: 'test_echo', priority: 0, args: {} });
    assert.equal(echoed.command_result.deploy_result, 'echo {"a":1}');

    // The heartbeats the commands above forced have gone out: only the gated step's can come.
    await heartbeatsQuiet(conductor, 500);

    // The gated step with wait=false: RUNNING at once.
    const started = await post(conductor, executeDeployStep('test_gated', { wait: true }), false);
    assert.equal(started.status, 200);
    const running = started.body as Json;
    assert.equal(running.command_status, 'RUNNING');
    assert.equal(running.command_name, 'execute_deploy_step');
    assert.deepEqual(await gated.started, { wait: true });

    const busy = await post(conductor, { name: 'deploy.get_deploy_steps', params: NODE }, true);
    assert.equal(busy.status, 409);
    assert.equal((busy.body as Json).faultstring, 'Agent is busy: executing command execute_deploy_step');

    const listed = (await conductor.callAgent({ path: '/v1/commands/' })).body as Json;
    assert.deepEqual(listed.commands.map((c: Json) => [c.command_name, c.command_status]), [
      ['get_deploy_steps', 'SUCCEEDED'], ['get_clean_steps', 'SUCCEEDED'], ['execute_deploy_step', 'SUCCEEDED'], ['execute_deploy_step', 'RUNNING'],
    ]);
    assert.equal(listed.commands[3].id, running.id);

    let waitDone = false;
    const waited = conductor.callAgent({ path: `/v1/commands/${running.id}`, query: { wait: 'true' } }).then((r) => { waitDone = true; return r; });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(waitDone, false, '?wait=true answered while the step was still running');

    const beatsBefore = conductor.heartbeats.length;
    const forced = conductor.nextHeartbeat(8000);
    const releasedAt = Date.now();
    gated.release({ done: 'yes' });
    const finished = (await waited).body as Json;
    assert.equal(finished.command_status, 'SUCCEEDED');
    assert.deepEqual(finished.command_result.deploy_result, { done: 'yes' });
    assert.equal(finished.command_result.deploy_step.step, 'test_gated');

    // heartbeat_timeout is 300 s, so only the forced beat (≤ 0.5 s after the release) can come now.
    const hb = await forced;
    assert.equal(hb.status, 202, hb.error);
    assert.ok(hb.at >= releasedAt);
    assert.equal(conductor.heartbeats.length, beatsBefore + 1);
    assert.equal((hb.body as Json).agent_status_message, undefined, 'no progress message once idle');

    const unknown = await conductor.callAgent({ path: '/v1/commands/00000000-0000-0000-0000-000000000000' });
    assert.equal(unknown.status, 404);
    const badStep = (await post(conductor, executeDeployStep('no_such_step'), true)).body as Json;
    assert.equal(badStep.command_status, 'FAILED');
    assert.match(badStep.command_error.details, /no_such_step/);
  });

  it('shows the progress of a running step in agent_status_message and in the command result', async (t) => {
    const gated = createGatedStep();
    const { conductor } = await startTestAgent(t, { extraSteps: [gated.definition], conductorOptions: { heartbeatTimeout: 1 } });
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');

    const running = (await post(conductor, executeDeployStep('test_gated'), false)).body as Json;
    await gated.started;
    gated.report({ phase: 'pull', message: 'layer 2 of 3', bytes_done: 50 * 1048576, bytes_total: 100 * 1048576 });

    const hb = await eventually(async () => {
      const beat = await conductor.nextHeartbeat(3000);
      return typeof (beat.body as Json).agent_status_message === 'string' ? beat : undefined;
    }, 6000, 'a heartbeat with agent_status_message');
    assert.equal(hb.status, 202, hb.error);
    assert.equal(hb.headers['x-openstack-ironic-api-version'], '1.72');
    assert.equal((hb.body as Json).agent_status_message, 'deploy.execute_deploy_step: pull: layer 2 of 3 (50% of 100 MiB)');
    assert.equal(conductor.agentStatusMessage, 'deploy.execute_deploy_step: pull: layer 2 of 3 (50% of 100 MiB)');

    const polled = (await conductor.callAgent({ path: `/v1/commands/${running.id}` })).body as Json;
    assert.equal(polled.command_status, 'RUNNING');
    assert.equal(polled.command_result.progress.phase, 'pull');
    assert.equal(polled.command_result.progress.bytes_done, 50 * 1048576);

    gated.report({ phase: 'install', message: 'bootc install to-disk' });
    await eventually(async () => (await conductor.nextHeartbeat(3000)).body && conductor.agentStatusMessage === 'deploy.execute_deploy_step: install: bootc install to-disk', 6000, 'the next phase in a heartbeat');

    // Ironic keeps the last message it got: once done, the agent says how the command ended.
    gated.release();
    const end = await eventually(async () => {
      const beat = await conductor.nextHeartbeat(3000);
      return beat.status === 202 && !String((beat.body as Json).agent_status_message).includes(': install: ') ? beat : undefined;
    }, 8000, 'a heartbeat after the step finished');
    assert.equal((end.body as Json).agent_status_message, 'deploy.execute_deploy_step: SUCCEEDED');
  });
});

describe('createAgent: the API limits come from the configuration', () => {
  it('refuses a body with more JSON entries than api_max_json_entries allows, and takes one within it', async (t) => {
    const { conductor } = await startTestAgent(t, { extraSteps: [echoStep], config: { api_max_json_entries: 50 } });
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');
    const params = (n: number) => ({ node: { uuid: 'n', instance_info: Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])) }, ports: [] });
    const big = await conductor.callAgent({ method: 'POST', path: '/v1/commands/', query: { wait: 'true' }, body: { name: 'deploy.get_deploy_steps', params: params(100) } });
    assert.equal(big.status, 413);
    assert.equal((big.body as Json).error_code, 'REQUEST_JSON_TOO_COMPLEX');
    const small = await conductor.callAgent({ method: 'POST', path: '/v1/commands/', query: { wait: 'true' }, body: { name: 'deploy.get_deploy_steps', params: params(10) } });
    assert.equal(small.status, 200, JSON.stringify(small.body));
  });
});

describe('createAgent: state survives a restart within one boot', () => {
  it('persists the token, certificate and callback URL and presents the same ones after stop() and a new createAgent', async (t) => {
    const conductor = await startFakeConductor({ macs: [MACS[0]!] });
    t.after(() => conductor.close());
    const stateDir = await tempDir(t);

    const first = await startTestAgent(t, { conductor, stateDir });
    await eventually(() => conductor.acceptedHeartbeats.length >= 1, 5000, 'first heartbeat');
    const firstAgent = { token: first.agent.token, cert: first.agent.certificatePem, url: first.agent.callbackUrl, port: first.agent.listenPort };

    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    for (const file of ['token', 'tls-cert.pem', 'tls-key.pem', 'callback-url', 'node.json']) {
      assert.equal((await stat(join(stateDir, file))).mode & 0o777, 0o600, `${file} mode`);
    }
    assert.equal((await readFile(join(stateDir, 'token'), 'utf8')).trim(), conductor.token);
    assert.equal(await readFile(join(stateDir, 'tls-cert.pem'), 'utf8'), firstAgent.cert);
    assert.equal((await readFile(join(stateDir, 'callback-url'), 'utf8')).trim(), firstAgent.url);
    const node = JSON.parse(await readFile(join(stateDir, 'node.json'), 'utf8')) as Json;
    assert.equal(node.node_uuid, conductor.nodeUuid);
    assert.equal(node.config.agent_token, '******', 'node.json must not hold the token');

    await first.stop();
    assert.ok(!conductor.lookups.some((l) => l.status !== 200));

    // Same boot, same state_dir and port: the conductor now masks the token.
    const second = await startTestAgent(t, { conductor, stateDir, config: { listen_port: firstAgent.port } });
    const beat = await eventually(() => conductor.acceptedHeartbeats[1], 5000, 'heartbeat of the restarted agent');
    assert.equal(conductor.lookups.length, 2);
    assert.equal(second.agent.token, firstAgent.token);
    assert.equal(second.agent.certificatePem, firstAgent.cert);
    assert.equal(second.agent.callbackUrl, firstAgent.url);
    assert.equal((beat.body as Json).agent_verify_ca, firstAgent.cert);
    assert.equal(conductor.heartbeats.filter((h) => h.status !== 202).length, 0, 'the conductor refused a heartbeat');
    assert.equal((await conductor.callAgent({ path: '/v1/commands/' })).status, 200);
  });
});

describe('createAgent: machine commands', () => {
  it('standby.power_off answers first, then syncs and powers off through the injected controller', async (t) => {
    const power = createRecordingPower();
    const { conductor } = await startTestAgent(t, { power, replyGraceMs: 300 });
    await eventually(() => conductor.agentUrl, 5000, 'first heartbeat');

    const synced = (await post(conductor, { name: 'standby.sync', params: {} }, true)).body as Json;
    assert.equal(synced.command_status, 'SUCCEEDED');
    assert.deepEqual(power.actions, ['sync']);

    const reply = (await post(conductor, { name: 'standby.power_off', params: {} }, false)).body as Json;
    assert.equal(reply.command_status, 'RUNNING');
    assert.deepEqual(power.actions, ['sync'], 'powered off before answering');
    const done = (await conductor.callAgent({ path: `/v1/commands/${reply.id}`, query: { wait: 'true' } })).body as Json;
    assert.equal(done.command_status, 'SUCCEEDED');
    assert.deepEqual(done.command_result, { result: 'power_off: powering off' });
    assert.deepEqual(power.actions, ['sync', 'sync', 'powerOff']);
  });

  it('system.lockdown stops the heartbeats and closes the API', async (t) => {
    const power = createRecordingPower();
    const { conductor, agent } = await startTestAgent(t, { power, conductorOptions: { heartbeatTimeout: 1 } });
    await eventually(() => conductor.acceptedHeartbeats.length >= 2, 5000, 'two heartbeats');

    const reply = (await post(conductor, { name: 'system.lockdown', params: {} }, false)).body as Json;
    assert.equal(reply.command_status, 'RUNNING');
    const never = new AbortController();
    const timer = setTimeout(() => never.abort(), 5000);
    await agent.finished(never.signal);
    clearTimeout(timer);
    assert.equal(never.signal.aborted, false, 'finished() resolved only because the test gave up');
    assert.deepEqual(power.actions, ['sync']);

    await assert.rejects(conductor.callAgent({ path: '/v1/commands/' }), /ECONNREFUSED|closed|other side|socket/i);
    const beats = conductor.heartbeats.length;
    await new Promise((r) => setTimeout(r, 1200)); // > 2 × the 0.3–0.6 s interval
    assert.equal(conductor.heartbeats.length, beats, 'heartbeats continued after lockdown');
  });
});
