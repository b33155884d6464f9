import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { z } from 'zod';
import { createRouter, startApiServer } from '../../src/api/index.ts';
import { CommandExecutor, defineCommand } from '../../src/commands/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';

const TOKEN = 't'.repeat(40);

async function start() {
  const log = createSilentLogger();
  const executor = new CommandExecutor({ log });
  executor.register([defineCommand({ name: 'test.echo', mode: 'sync', params: z.object({ v: z.string() }).strict(), run: async (p) => p.v })]);
  const router = createRouter({ executor, log, agentVersion: 'test', startedAt: 0, getToken: () => TOKEN, getInventory: async () => ({}) });
  return startApiServer({ router, log, host: '127.0.0.1', port: 0, maxBodyBytes: 4096 });
}

describe('API server on a real socket', () => {
  it('answers JSON on port 0 and refuses bodies over the limit with 413, then keeps serving', async (t) => {
    const server = await start();
    t.after(() => server.close());
    const base = `http://127.0.0.1:${server.address.port}`;
    const ok = await request(`${base}/v1/commands/?agent_token=${TOKEN}`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'test.echo', params: { v: 'hi' } }),
    });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.headers['content-type'], 'application/json');
    assert.deepEqual(((await ok.body.json()) as { command_result: unknown }).command_result, { result: 'hi' });

    const huge = await request(`${base}/v1/commands/?agent_token=${TOKEN}`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'test.echo', params: { v: 'x'.repeat(10_000) } }),
    });
    assert.equal(huge.statusCode, 413);
    const body = (await huge.body.json()) as { faultstring: string; faultcode: string };
    assert.match(body.faultstring, /exceeds the limit of 4096 bytes/);
    assert.equal(body.faultcode, 'Client');

    const again = await request(`${base}/v1/status`);
    assert.equal(again.statusCode, 200);
    await again.body.dump();
  });
});
