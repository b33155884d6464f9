/**
 * Issue 15: what verifying the signatures policy.json asks for adds to resolving an image on a
 * local registry — none asked for, a cosign `.sig` tag signature, a v0.3 sigstore bundle found as
 * an OCI 1.1 referrer — and what it adds to a process's memory, which only a policy that asks
 * for signatures may change (the verifier and the sigstore libraries load on first use).
 * @module
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createOciClient, parsePolicy, type OciClient } from '../../src/oci/index.ts';
import {
  makeBundle, makeKey, pushBundleReferrer, pushSigTag, signPayload, simplePayload, type TestKey,
} from '../../test/helpers/signatures.ts';
import { fmtCpu, fmtMiB, median, requireTools, rotated, run, ROOT, spread, table, verdict, type BenchContext, type Section } from './common.ts';
import { pushImageManifest, startBenchRegistry, writeRandomFile, type BenchRegistry } from './registry.ts';

const TARGET_MS = 100;

interface Sample { ms: number; cpuMs: number }

function clientFor(br: BenchRegistry, key: TestKey | undefined): OciClient {
  const policy = key
    ? parsePolicy(JSON.stringify({ default: [{ type: 'sigstoreSigned', keyData: Buffer.from(key.publicPem).toString('base64'), signedIdentity: { type: 'matchRepository' } }] }))
    : null;
  return createOciClient({ registries: { registries: [] }, policy, authFilePaths: [], certsDirs: [br.reg.certsDir] });
}

// One inspect (manifest, config, and the signatures when asked for) with a fresh client, as a deploy does.
async function inspectOnce(br: BenchRegistry, repo: string, key: TestKey | undefined): Promise<Sample> {
  const client = clientFor(br, key);
  try {
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    const image = await client.inspectImage(`oci://${br.reg.host}/${repo}:v1`, { credentials: br.credentials, platform: { architecture: 'amd64' } });
    const ms = performance.now() - started;
    const cpu = process.cpuUsage(cpu0);
    if (key && !image.signatures?.length) throw new Error(`${repo}: no signature was verified`);
    return { ms, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    await client.close();
  }
}

async function signedImages(br: BenchRegistry, dir: string, key: TestKey): Promise<void> {
  const layer = join(dir, 'layer');
  await writeRandomFile(layer, 1 << 20);
  for (const repo of ['bench/unsigned', 'bench/sig-tag', 'bench/bundle']) {
    const pushed = await pushImageManifest(br, repo, 'v1', [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await br.pushFile(repo, layer)) }]);
    if (repo === 'bench/sig-tag') {
      const payload = simplePayload(`${br.reg.host}/${repo}`, pushed.digest);
      await pushSigTag(br.reg, repo, pushed.digest, [{ payload, signature: signPayload(key, payload) }]);
    }
    if (repo === 'bench/bundle') await pushBundleReferrer(br.reg, repo, pushed, makeBundle(key, pushed.digest), true);
  }
}

// RSS of a fresh process after one inspect, with or without a policy that asks for signatures.
async function rssAfterInspect(br: BenchRegistry, repo: string, signed: boolean, keyPath: string): Promise<number | undefined> {
  const script = `
    import { createOciClient, parsePolicy } from './src/oci/index.ts';
    const policy = ${signed} ? parsePolicy(JSON.stringify({ default: [{ type: 'sigstoreSigned', keyPath: ${JSON.stringify(keyPath)}, signedIdentity: { type: 'matchRepository' } }] })) : null;
    const client = createOciClient({ registries: { registries: [] }, policy, authFilePaths: [], certsDirs: [${JSON.stringify(br.reg.certsDir)}] });
    await client.inspectImage('oci://${br.reg.host}/${repo}:v1', { credentials: ${JSON.stringify(br.credentials)}, platform: { architecture: 'amd64' } });
    await client.close();
    globalThis.gc?.();
    process.stdout.write(String(process.memoryUsage().rss));`;
  const result = await run(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, allowFail: true });
  const rss = Number(result.stdout.trim());
  return Number.isFinite(rss) && rss > 0 ? rss / 1024 : undefined;
}

async function runSignatures(ctx: BenchContext): Promise<void> {
  requireTools('docker-registry', 'openssl', 'htpasswd');
  const dir = join(ctx.tmp, 'signatures');
  await mkdir(dir, { recursive: true });
  const br = await startBenchRegistry(dir);
  const key = makeKey();
  const keyPath = join(dir, 'key.pub');
  await writeFile(keyPath, key.publicPem);
  await signedImages(br, dir, key);
  // The first verification loads the verifier (and, for a bundle, the sigstore libraries).
  const first = { sig: await inspectOnce(br, 'bench/sig-tag', key), bundle: await inspectOnce(br, 'bench/bundle', key) };
  const runs = Math.max(5, ctx.options.runs * 3);
  const t = { none: [] as Sample[], sig: [] as Sample[], bundle: [] as Sample[] };
  for (let i = 0; i < runs; i++) {
    await rotated(i, [
      async () => { t.none.push(await inspectOnce(br, 'bench/unsigned', undefined)); },
      async () => { t.sig.push(await inspectOnce(br, 'bench/sig-tag', key)); },
      async () => { t.bundle.push(await inspectOnce(br, 'bench/bundle', key)); },
    ]);
  }
  const base = median(t.none.map((s) => s.ms));
  const row = (name: string, samples: Sample[], cold?: Sample) => {
    const ms = median(samples.map((s) => s.ms));
    return [name, `${ms.toFixed(1)} ms (${spread(samples.map((s) => s.ms / 1000))})`, fmtCpu(samples.map((s) => s.cpuMs / 1000)),
      samples === t.none ? '—' : `+${(ms - base).toFixed(1)} ms ${verdict(ms - base <= TARGET_MS)}`, cold ? `${cold.ms.toFixed(0)} ms` : '—'];
  };
  console.log(`  resolve and inspect one image with a fresh client, local TLS registry, median of ${runs} interleaved runs (target: verification adds ≤ ${TARGET_MS} ms)`);
  console.log(table(['policy asks for', 'inspect', 'CPU', 'added', 'first call (loads the verifier)'], [
    row('nothing (insecureAcceptAnything)', t.none),
    row('sigstoreSigned: cosign .sig tag', t.sig, first.sig),
    row('sigstoreSigned: v0.3 bundle referrer', t.bundle, first.bundle),
  ]));
  const rss = { none: await rssAfterInspect(br, 'bench/unsigned', false, keyPath), bundle: await rssAfterInspect(br, 'bench/bundle', true, keyPath) };
  console.log(`\n  RSS of a fresh process after one inspect (target: unchanged when no policy asks for signatures: the verifier loads only when one does)`);
  console.log(table(['policy asks for', 'RSS'], [['nothing', fmtMiB(rss.none)], ['sigstoreSigned (bundle)', fmtMiB(rss.bundle)]]));
}

export const signaturesSection: Section = { name: 'signatures', title: 'what signature verification adds to resolving an image', run: runSignatures };
