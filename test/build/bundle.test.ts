/**
 * The ramdisk's agent is the bundle (`npm run build`), not src/ through tsx: build it into a
 * temporary directory and run it the way the ramdisk's unit does, against the fake conductor:
 * lookup, heartbeat, then commands over HTTPS trusting only the certificate the agent sent
 * (including the inventory, whose modules the bundle loads lazily).
 * Also checks what the bundle imports at load: only `node:module` (its `require`), because
 * Node's ESM facade of a built-in reads every export, lazy getters included (scripts/build.mjs).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { localMacAddresses, startFakeConductor } from '../helpers/fake-conductor.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

describe('the bundle (npm run build)', () => {
  let dir: string;
  let bundle: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bundle-test-'));
    bundle = join(dir, 'bootc-agent.mjs');
    await execa(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--outfile', bundle], { cwd: ROOT });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('imports no built-in through ESM at load, only node:module for its require()', async () => {
    const code = await readFile(bundle, 'utf8');
    const staticImports = [...code.matchAll(/(?:^|[;}\n])\s*import\s*(?:[\w*{}\s,$]+?\s*from\s*)?["']([^"']+)["']/g)].map((m) => m[1]);
    assert.deepEqual(staticImports, ['node:module']);
    // And it does use built-ins, through require (the check above is not vacuous).
    assert.match(code, /require\("node:tls"\)/);
    assert.match(code, /require\("node:process"\)/);
  });

  it('prints its help and exits 0 with plain node', async () => {
    const r = await execa(process.execPath, [bundle, '--help'], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^Usage: bootc-agent/);
  });

  it('looks up, heartbeats and runs commands over HTTPS, as the ramdisk runs it', async (t) => {
    const macs = await localMacAddresses();
    if (macs.length === 0) {
      t.skip('no network interface with a MAC address here: the agent cannot look itself up');
      return;
    }
    const conductor = await startFakeConductor({ macs, requireTls: true });
    const state = await mkdtemp(join(dir, 'state-'));
    await writeFile(join(state, 'config.json'), '{}');
    const child = spawn(process.execPath, [
      '--max-semi-space-size=1', bundle, '--listen-host', '127.0.0.1', '--listen-port', '0', '--advertise-host', '127.0.0.1',
      '--state-dir', state, '--log-file', join(state, 'agent.log'), '--cmdline-file', '/dev/null', '--config', join(state, 'config.json'),
      '--api-url', conductor.url,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    try {
      const deadline = Date.now() + 30_000;
      while (conductor.acceptedHeartbeats.length === 0) {
        assert.equal(child.exitCode, null, `the agent exited: ${stderr}`);
        assert.ok(Date.now() < deadline, `no accepted heartbeat within 30 s: ${stderr}`);
        await sleep(20);
      }
      assert.match(conductor.agentUrl ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);

      const status = await conductor.callAgent({ path: '/v1/status', withoutToken: true });
      assert.equal(status.status, 200);
      const steps = await conductor.callAgent({
        method: 'POST', path: '/v1/commands/', query: { wait: 'true' },
        body: { name: 'deploy.get_deploy_steps', params: { node: { uuid: 'x' }, ports: [] } },
      });
      assert.equal(steps.status, 200, JSON.stringify(steps.body));
      const result = steps.body as { command_status: string; command_result: { deploy_steps: Record<string, { step: string }[]> } };
      assert.equal(result.command_status, 'SUCCEEDED');
      assert.ok(Object.values(result.command_result.deploy_steps).flat().some((s) => s.step === 'execute_bootc_install'));
      // The inventory loads systeminformation's modules one by one (src/hardware/inventory.ts).
      const inventory = await conductor.callAgent({ method: 'POST', path: '/v1/commands/', query: { wait: 'true' }, body: { name: 'system.get_inventory', params: {} } });
      assert.equal(inventory.status, 200, JSON.stringify(inventory.body));
      const inv = (inventory.body as { command_status: string; command_result: { inventory: { cpu: { count: number }; memory: { total: number } } } });
      assert.equal(inv.command_status, 'SUCCEEDED', JSON.stringify(inventory.body).slice(0, 500));
      assert.ok(inv.command_result.inventory.cpu.count >= 1);
      assert.ok(inv.command_result.inventory.memory.total > 0);
      const denied = await conductor.callAgent({ path: '/v1/commands/', withoutToken: true });
      assert.equal(denied.status, 401);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await conductor.close();
    }
    assert.equal(child.exitCode, 0, `the agent did not stop cleanly on SIGTERM: ${stderr}`);
  });
});
