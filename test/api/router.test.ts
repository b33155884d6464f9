import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createRouter, type ApiRequest } from '../../src/api/index.ts';
import { CommandExecutor, createStepCommands, defineCommand, StepRegistry } from '../../src/commands/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';

const TOKEN = 'x'.repeat(43);

function setup() {
  const log = createSilentLogger();
  const executor = new CommandExecutor({ log });
  const steps = new StepRegistry();
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  steps.register([{ interface: 'deploy', step: 'test_step', priority: 0, reboot_requested: false, run: async (args) => { await held; return { echoed: args.value }; } }]);
  executor.register([
    ...createStepCommands(steps),
    defineCommand({ name: 'standby.sync', mode: 'sync', params: z.object({}).strict(), run: async () => null }),
  ]);
  const router = createRouter({
    executor, log, agentVersion: '0.1.0', startedAt: 1700000000.5,
    getToken: () => TOKEN,
    getInventory: async () => ({ hostname: 'test' }),
  });
  const call = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => {
    const request: ApiRequest = { method, url, headers: { host: 'agent:9999', ...headers }, secure: true };
    if (body !== undefined) request.body = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    return router(request);
  };
  return { call, release, executor };
}

const q = `agent_token=${TOKEN}`;
const node = { uuid: '1be26c0b-03f2-4d2e-ae87-c02d7f33c123', instance_info: {}, properties: {} };

describe('agent API router', () => {
  it('serves the version documents without a token', async () => {
    const { call } = setup();
    const root = await call('GET', '/');
    assert.equal(root.status, 200);
    assert.deepEqual((root.body as { default_version: unknown }).default_version, { id: 'v1', links: [{ href: 'https://agent:9999/v1/', rel: 'self' }] });
    for (const path of ['/v1', '/v1/']) {
      const v1 = await call('GET', path);
      assert.equal(v1.status, 200);
      assert.equal((v1.body as { media_types: Array<{ type: string }> }).media_types[0]!.type, 'application/vnd.openstack.ironic-python-agent.v1+json');
    }
    const status = await call('GET', '/v1/status');
    assert.deepEqual(status.body, { started_at: 1700000000.5, version: '0.1.0' });
  });

  for (const path of ['/v1/commands/', '/v1/commands', '/commands/', '/commands']) {
    it(`requires the token on GET ${path} (401 with IPA's faultstring)`, async () => {
      const { call } = setup();
      for (const url of [path, `${path}?agent_token=wrong`, `${path}?agent_token=`]) {
        const res = await call('GET', url);
        assert.equal(res.status, 401);
        assert.deepEqual({ ...(res.body as object), error_code: undefined }, { faultcode: 'Client', faultstring: '401 Unauthorized: Token invalid.', debuginfo: null, error_code: undefined });
      }
      const ok = await call('GET', `${path}?${q}`);
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.body, { commands: [] });
    });
  }

  it('requires the token on POST, GET by id and inventory', async () => {
    const { call } = setup();
    assert.equal((await call('POST', '/v1/commands/', { name: 'standby.sync', params: {} })).status, 401);
    assert.equal((await call('GET', '/v1/commands/some-id')).status, 401);
    assert.equal((await call('GET', '/v1/inventory')).status, 401);
    assert.deepEqual((await call('GET', `/v1/inventory?${q}`)).body, { inventory: { hostname: 'test' } });
  });

  it('runs a sync command and returns its final result', async () => {
    const { call } = setup();
    const res = await call('POST', `/v1/commands/?wait=false&${q}`, { name: 'standby.sync', params: {} }, { 'content-type': 'application/json' });
    assert.equal(res.status, 200);
    assert.equal((res.body as { command_status: string }).command_status, 'SUCCEEDED');
    assert.equal((res.body as { command_name: string }).command_name, 'sync');
  });

  it('drives a deploy step as the conductor does: get steps, execute, busy, poll, wait', async () => {
    const { call, release } = setup();
    const steps = await call('POST', `/v1/commands/?wait=true&${q}`, { name: 'deploy.get_deploy_steps', params: { node, ports: [] } });
    assert.equal(steps.status, 200);
    const stepsResult = (steps.body as { command_result: { deploy_steps: Record<string, unknown[]>; hardware_manager_version: Record<string, string> } }).command_result;
    assert.deepEqual(stepsResult.deploy_steps, {
      BootcAgentHardwareManager: [{ step: 'test_step', priority: 0, interface: 'deploy', reboot_requested: false, abortable: false }],
    });
    assert.deepEqual(stepsResult.hardware_manager_version, { bootc_agent_hardware_manager: '1.0' });

    const step = { interface: 'deploy', step: 'test_step', args: { value: 42 } };
    const started = await call('POST', `/v1/commands/?wait=false&${q}`, {
      name: 'deploy.execute_deploy_step', params: { step, node, ports: [], deploy_version: stepsResult.hardware_manager_version },
    });
    assert.equal(started.status, 200);
    const { id, command_status: status, command_name: name } = started.body as { id: string; command_status: string; command_name: string };
    assert.equal(status, 'RUNNING');
    assert.equal(name, 'execute_deploy_step');

    const busy = await call('POST', `/v1/commands/?${q}`, { name: 'standby.sync', params: {} });
    assert.equal(busy.status, 409);
    assert.equal((busy.body as { faultstring: string }).faultstring, 'Agent is busy: executing command execute_deploy_step');

    const list = await call('GET', `/v1/commands/?${q}`);
    assert.deepEqual((list.body as { commands: Array<{ command_name: string }> }).commands.map((c) => c.command_name), ['get_deploy_steps', 'execute_deploy_step']);

    const waiting = call('GET', `/v1/commands/${id}?wait=true&${q}`);
    release();
    const done = await waiting;
    assert.equal(done.status, 200);
    assert.deepEqual((done.body as { command_result: unknown }).command_result, {
      deploy_result: { echoed: 42 },
      deploy_step: { interface: 'deploy', step: 'test_step', priority: 0, args: {} },
    });
  });

  it('fails an unknown step and a changed version map the IPA way', async () => {
    const { call } = setup();
    const unknown = await call('POST', `/v1/commands/?wait=true&${q}`, {
      name: 'deploy.execute_deploy_step', params: { step: { interface: 'deploy', step: 'nope', args: {} }, node, ports: [] },
    });
    assert.equal((unknown.body as { command_status: string }).command_status, 'FAILED');
    assert.equal((unknown.body as { command_error: { type: string } }).command_error.type, 'HardwareManagerMethodNotFound');
    const mismatch = await call('POST', `/v1/commands/?wait=true&${q}`, {
      name: 'deploy.execute_deploy_step', params: { step: { interface: 'deploy', step: 'test_step', args: {} }, node, ports: [], deploy_version: { generic_hardware_manager: '1.2' } },
    });
    assert.equal((mismatch.body as { command_status: string }).command_status, 'CLEAN_VERSION_MISMATCH');
  });

  const bad: Array<[string, string, string, unknown, Record<string, string>, number]> = [
    ['malformed JSON', 'POST', `/v1/commands/?${q}`, '{"name": ', {}, 400],
    ['an empty body', 'POST', `/v1/commands/?${q}`, '', {}, 400],
    ['a non-object body', 'POST', `/v1/commands/?${q}`, [1, 2], {}, 400],
    ['a missing name', 'POST', `/v1/commands/?${q}`, { params: {} }, {}, 400],
    ['a non-object params', 'POST', `/v1/commands/?${q}`, { name: 'standby.sync', params: 'x' }, {}, 400],
    ['an extra body key', 'POST', `/v1/commands/?${q}`, { name: 'standby.sync', params: {}, x: 1 }, {}, 400],
    ['a name without a dot', 'POST', `/v1/commands/?${q}`, { name: 'sync', params: {} }, {}, 400],
    ['an unknown command', 'POST', `/v1/commands/?${q}`, { name: 'standby.nope', params: {} }, {}, 400],
    ['an unknown extension', 'POST', `/v1/commands/?${q}`, { name: 'nope.sync', params: {} }, {}, 404],
    ['an extra param', 'POST', `/v1/commands/?${q}`, { name: 'standby.sync', params: { force: true } }, {}, 400],
    ['wrong param types', 'POST', `/v1/commands/?${q}`, { name: 'deploy.get_deploy_steps', params: { node: 'x', ports: [] } }, {}, 400],
    ['a bad wait value', 'POST', `/v1/commands/?wait=maybe&${q}`, { name: 'standby.sync', params: {} }, {}, 400],
    ['a non-JSON content type', 'POST', `/v1/commands/?${q}`, 'name=x', { 'content-type': 'application/x-www-form-urlencoded' }, 415],
    ['an unknown id', 'GET', `/v1/commands/0000?${q}`, undefined, {}, 404],
    ['an unknown route', 'GET', '/v1/nope', undefined, {}, 404],
    ['a wrong method', 'DELETE', `/v1/commands/?${q}`, undefined, {}, 405],
  ];
  for (const [what, method, url, body, headers, status] of bad) {
    it(`answers ${status} with a JSON faultstring for ${what}`, async () => {
      const { call } = setup();
      const res = await call(method, url, body, headers);
      assert.equal(res.status, status);
      const b = res.body as { faultstring: unknown; faultcode: unknown };
      assert.equal(typeof b.faultstring, 'string');
      assert.equal(b.faultcode, status >= 500 ? 'Server' : 'Client');
      // the agent keeps serving
      assert.equal((await call('GET', `/v1/commands/?${q}`)).status, 200);
    });
  }
});
