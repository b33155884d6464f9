/**
 * Issue 17: a fleet deploying at once. An origin registry behind a rate-limited link, a
 * pull-through cache in front of it (docker-registry with `proxy: remoteurl:`, nginx's
 * proxy_cache, or each in turn: `--fleet-cache`), and N agent
 * processes, each with its own state_dir, loop disk, podman store and registries.conf.d, all
 * deploying the same `oci://` raw image (write_image) and then the same bootc image
 * (execute_bootc_install, the stand-in) at the same moment — straight from the origin, and
 * through the cache named in the agents' `registry_mirrors`. Then the same rounds with the cache
 * killed halfway (not restarted within the round): every node must still succeed, from the
 * origin. Figures: the origin's bytes (counted at the link), wall time per N, each node's time
 * and throughput, CPU, failures. How to run it and what it showed: docs/fleet.md.
 * @module
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BUNDLE, ensureBundle, ramdiskNode } from './bundle.ts';
import { deferCleanup, fmtBytes, moduleExists, requireRoot, requireTools, run, Skip, type BenchContext, type Section } from './common.ts';
import { loadAverage } from './machine.ts';
import { nodeDisk, nodeStore, sourceLines, startFleetAgent, type FleetAgent } from './fleet/agents.ts';
import { createPullThroughCache, type CacheEngine, type PullThroughCache } from './fleet/cache.ts';
import { createNginxCache, NGINX_BIN } from './fleet/nginx.ts';
import { FLEET_HELP, takeFleetFlags, type FleetOptions } from './fleet/options.ts';
import { printRound, printSummary } from './fleet/report.ts';
import { runRound, type FleetSetting, type Kind, type Mode, type RoundResult } from './fleet/rounds.ts';
import { BOOTC_REPO, bootcImageBytes, pushRawImage, startOrigin, TAG, type FleetImage, type Origin } from './fleet/setup.ts';
import type { LoopDevice } from './loop.ts';

const parsed: FleetOptions | Error = (() => {
  try {
    return takeFleetFlags(process.argv);
  } catch (err) {
    return err as Error;
  }
})();

const DISK_BYTES = 12 * 2 ** 30;

const CACHES: Record<CacheEngine, typeof createPullThroughCache> = { distribution: createPullThroughCache, nginx: createNginxCache };
const STEP_TIMEOUT_S = 1800;
const STORE_ROOT = '/var/lib/bootc-agent-bench';

interface Node {
  dir: string;
  disk: LoopDevice;
  storageConf: string;
}

/** One tmpfs for every node's podman store (the ramdisk keeps it in memory), outside /tmp. */
async function mountStores(): Promise<{ root: string; remove(): Promise<void> }> {
  await mkdir(STORE_ROOT, { recursive: true, mode: 0o700 });
  const root = await mkdtemp(join(STORE_ROOT, 'fleet-'));
  const remove = deferCleanup(async () => {
    const mounts = (await readFile('/proc/self/mounts', 'utf8').catch(() => '')).split('\n')
      .map((l) => l.split(' ')[1] ?? '').filter((m) => m === root || m.startsWith(`${root}/`)).reverse();
    for (const m of mounts) await run('umount', ['--', m], { allowFail: true });
    await rm(root, { recursive: true, force: true });
  });
  await run('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=60%', 'tmpfs', root]).catch(async (err: unknown) => {
    await remove();
    throw err;
  });
  return { root, remove };
}

async function startPool(argv: string[], nodes: Node[], mode: Mode, origin: Origin, cache: PullThroughCache): Promise<FleetAgent[]> {
  const pool: FleetAgent[] = [];
  try {
    for (const [index, node] of nodes.entries()) {
      const flags = mode === 'cache'
        ? [`--registry-mirrors=${origin.link.host}=${cache.host};ca=${cache.cert.certPath}`, `--registries-conf-dir=${join(node.dir, 'registries.conf.d')}`]
        : [];
      await rm(join(node.dir, 'state'), { recursive: true, force: true });
      pool.push(await startFleetAgent({ argv, dir: node.dir, index, disk: node.disk, storageConf: node.storageConf, flags }));
    }
    return pool;
  } catch (err) {
    for (const a of pool) await a.stop();
    throw err;
  }
}

function checkPrerequisites(): FleetOptions {
  if (parsed instanceof Error) throw parsed;
  requireRoot('loop devices, rootful podman, a tmpfs');
  requireTools('podman', 'skopeo', 'losetup', 'partx', 'mount', 'umount');
  if (parsed.caches.includes('nginx') && !existsSync(NGINX_BIN)) throw new Skip(`--fleet-cache=${parsed.caches.length > 1 ? 'both' : 'nginx'}: no ${NGINX_BIN} (scripts/setup installs nginx)`);
  if (!moduleExists('src/config/registry-mirrors.ts')) throw new Skip('the agent has no registry_mirrors option yet (src/config/registry-mirrors.ts)');
  return parsed;
}

async function pushImages(ctx: BenchContext, o: FleetOptions, origin: Origin): Promise<Record<Kind, FleetImage>> {
  const images: Partial<Record<Kind, FleetImage>> = {};
  if (o.kinds.includes('raw')) images.raw = await pushRawImage(origin, ctx.tmp, o.rawSize);
  if (o.kinds.includes('bootc')) {
    const standin = await import('../../test/helpers/standin-image.ts');
    const why = standin.standinUnavailable();
    if (why) throw new Skip(why);
    ctx.log('fleet: building (or reusing) the stand-in image');
    // Without the canaries: the origin has no credentials to leak, and the stand-in's scan would
    // otherwise fail our installs over another run's stand-in secrets under /tmp.
    const image = await standin.buildStandinVariant({ noCanaries: true, name: 'localhost/bootc-standin-fleet', log: ctx.log });
    const r = origin.registry;
    await standin.pushStandin({ host: r.host, certsDir: r.certsDir, username: r.username, password: r.password, auth: 'none' }, BOOTC_REPO, TAG, image);
    images.bootc = await bootcImageBytes(origin);
  }
  return images as Record<Kind, FleetImage>;
}

async function makeNodes(ctx: BenchContext, count: number, storeRoot: string): Promise<Node[]> {
  const nodes: Node[] = [];
  for (let i = 0; i < count; i++) {
    const dir = join(ctx.tmp, `node-${i}`);
    await mkdir(dir, { recursive: true });
    nodes.push({ dir, disk: await nodeDisk(dir, i, DISK_BYTES), storageConf: await nodeStore(storeRoot, i) });
  }
  return nodes;
}

/** The rounds through one cache (or straight from the origin), on a pool of agents pointed at it. */
async function runRounds(ctx: BenchContext, o: FleetOptions, setting: FleetSetting, mode: Mode, pool: FleetAgent[], nodes: Node[]): Promise<RoundResult[]> {
  const results: RoundResult[] = [];
  const engine = mode === 'cache' ? setting.cache.engine : undefined;
  const name = engine ? `${engine} cache` : mode;
  for (const n of o.nodes) {
    for (const kind of o.kinds) {
      // distribution's proxy fetches a blob from the origin once per request that misses while
      // it is still being fetched: also measured with one node going first.
      for (const canary of mode === 'cache' && n > 1 ? [false, true] : [false]) {
        ctx.log(`fleet: ${name}, ${kind}, N=${n}${canary ? ', one node first' : ''}`);
        results.push(await runRound(setting, pool, { mode, engine, kind, n, canary }));
        printRound(results.at(-1)!);
        if (mode === 'cache') ctx.log(`requests the cache answered: ${await setting.cache.takeRequests()}`);
        for (const line of await sourceLines(nodes[0]!.dir)) ctx.log(`node 0: ${line.slice(0, 400)}`);
      }
    }
  }
  if (mode !== 'cache' || !o.kill) return results;
  const maxN = Math.max(...o.nodes);
  for (const kind of o.kinds) {
    const cold = results.find((r) => r.spec.kind === kind && r.spec.n === maxN && !r.spec.canary);
    // Halfway through the fastest node's deploy in the cold round: every node is still fetching
    // (half the round's wall came after every node had finished through nginx once).
    const killAtS = Math.max(0.5, Math.min(...(cold?.outcomes.map((x) => x.seconds) ?? [20])) / 2);
    ctx.log(`fleet: ${name}, ${kind}, N=${maxN}, cache killed at ${killAtS.toFixed(1)} s`);
    results.push(await runRound(setting, pool, { mode, engine, kind, n: maxN, killAtS }));
    printRound(results.at(-1)!);
  }
  return results;
}

async function runModes(ctx: BenchContext, o: FleetOptions, setting: Omit<FleetSetting, 'cache'>, caches: PullThroughCache[], origin: Origin, nodes: Node[], argv: string[]): Promise<RoundResult[]> {
  const results: RoundResult[] = [];
  const passes: [Mode, PullThroughCache][] = [['origin', caches[0]!], ...caches.map((c): [Mode, PullThroughCache] => ['cache', c])];
  for (const [mode, cache] of passes) {
    ctx.log(`fleet: starting ${nodes.length} agents (${mode === 'cache' ? `${cache.engine} cache` : mode})`);
    for (const c of caches) await c.kill();
    const pool = await startPool(argv, nodes, mode, origin, cache);
    try {
      results.push(...await runRounds(ctx, o, { ...setting, cache }, mode, pool, nodes));
    } finally {
      await cache.kill();
      for (const a of pool) await a.stop();
    }
  }
  return results;
}

async function runFleet(ctx: BenchContext): Promise<void> {
  const o = checkPrerequisites();
  const note = await ensureBundle(ctx);
  const argv = [...ramdiskNode(), BUNDLE];
  const origin = await startOrigin(o.rate);
  const stores = await mountStores().catch(async (err: unknown) => {
    await origin.stop();
    throw err;
  });
  const caches: PullThroughCache[] = [];
  const nodes: Node[] = [];
  try {
    const images = await pushImages(ctx, o, origin);
    for (const engine of o.caches) caches.push(await CACHES[engine](ctx.tmp, origin.link.host, origin.registry.cert.certPath));
    nodes.push(...await makeNodes(ctx, Math.max(...o.nodes), stores.root));
    const setting: Omit<FleetSetting, 'cache'> = {
      link: origin.link, timeoutS: STEP_TIMEOUT_S,
      steps: {
        raw: { step: 'write_image', args: { image_info: { id: 'fleet-disk', urls: [images.raw?.source], disk_format: 'raw' } } },
        bootc: { step: 'execute_bootc_install', args: { image_source: images.bootc?.source } },
      },
    };
    console.log(`  ${note}; agents: ${argv.join(' ')}; nodes ${o.nodes.join(', ')}; kinds ${o.kinds.join(', ')}; caches ${o.caches.join(', ')}; cache killed halfway: ${o.kill ? 'yes' : 'no'}`);
    console.log(`  origin link ${(o.rate * 8 / 1e6).toFixed(0)} Mbit/s (${(o.rate / 1e6).toFixed(1)} MB/s) → ${origin.registry.host} (docker-registry, TLS, no auth); `
      + `caches: ${caches.map((c) => `${c.engine} ${c.host}`).join(', ')}; images: ${Object.entries(images).map(([k, v]) => `${k} ${fmtBytes(v.bytes)}`).join(', ')}; `
      + `${nodes.length} nodes, ${DISK_BYTES / 2 ** 30} GiB sparse loop disks; load average ${loadAverage()}`);
    const results = await runModes(ctx, o, setting, caches, origin, nodes, argv);
    printSummary(results, images, o);
  } finally {
    for (const node of nodes) await node.disk.detach();
    for (const cache of caches) await cache.remove();
    await stores.remove();
    await origin.stop();
  }
}

export const fleetSection: Section = {
  name: 'fleet',
  title: `N agents deploying at once from a rate-limited origin, with and without a pull-through cache (issue 17)\n${' '.repeat(32)}${FLEET_HELP}`,
  run: runFleet,
};

