/**
 * What the fleet deploys from: the origin registry (Debian's docker-registry, TLS, no auth —
 * see docs/fleet.md for why), the throttled link in front of it, the two images pushed to it
 * (an incompressible raw disk image as an ORAS-style artifact, and the stand-in bootc image),
 * and the origin's CA where podman and the agents' OCI client find it for the link's address.
 * @module
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { pushArtifact, startRegistry, type TestRegistry } from '../../../test/helpers/registry.ts';
import { deferCleanup } from '../common.ts';
import { writeRandomFile } from '../registry.ts';
import { startThrottledLink, type ThrottledLink } from './throttle.ts';

export const RAW_REPO = 'fleet/disk';
export const BOOTC_REPO = 'fleet/standin';
export const TAG = 'v1';

export interface Origin {
  registry: TestRegistry;
  link: ThrottledLink;
  stop(): Promise<void>;
}

export async function startOrigin(rate: number): Promise<Origin> {
  const registry = await startRegistry({ auth: 'none' });
  const stopRegistry = deferCleanup(() => registry.stop());
  const [host, port] = registry.host.split(':');
  const link = await startThrottledLink({ host: host!, port: Number(port) }, rate).catch(async (err: unknown) => {
    await stopRegistry();
    throw err;
  });
  const closeLink = deferCleanup(() => link.close());
  // podman and the agents' OCI client read /etc/containers/certs.d/<host:port>/ca.crt: the
  // link's port is ours alone, so nobody else's pulls see this file.
  const certDir = join('/etc/containers/certs.d', link.host);
  const removeCa = deferCleanup(() => rm(certDir, { recursive: true, force: true }));
  await mkdir(certDir, { recursive: true });
  await writeFile(join(certDir, 'ca.crt'), registry.cert.cert);
  return {
    registry, link,
    stop: async () => {
      await removeCa();
      await closeLink();
      await stopRegistry();
    },
  };
}

export interface FleetImage {
  /** The `oci://` reference through the link. */
  source: string;
  /** Bytes one node fetches: manifest, config and layers. */
  bytes: number;
}

/** The raw disk image: `size` random bytes, pushed straight to the origin (not through the link). */
export async function pushRawImage(origin: Origin, dir: string, size: number): Promise<FleetImage> {
  const file = join(dir, 'disk.raw');
  await writeRandomFile(file, size);
  const bytes = await readFile(file);
  await rm(file, { force: true });
  const pushed = await pushArtifact(origin.registry, RAW_REPO, TAG, { bytes, title: 'disk.raw', mediaType: 'application/octet-stream', artifactType: 'application/vnd.bootc-agent.bench.disk.v1' });
  return { source: `oci://${origin.link.host}/${RAW_REPO}:${TAG}`, bytes: pushed.size + 2 + size };
}

/** The stand-in image: its manifest, config and layers, as the origin stores them. */
export async function bootcImageBytes(origin: Origin): Promise<FleetImage> {
  const agent = new Agent({ connect: { ca: origin.registry.cert.cert } });
  try {
    const res = await request(`${origin.registry.url}/v2/${BOOTC_REPO}/manifests/${TAG}`, {
      dispatcher: agent, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const text = await res.body.text();
    const manifest = JSON.parse(text) as { config: { size: number }; layers: { size: number }[] };
    const bytes = Buffer.byteLength(text) + manifest.config.size + manifest.layers.reduce((s, l) => s + l.size, 0);
    return { source: `oci://${origin.link.host}/${BOOTC_REPO}:${TAG}`, bytes };
  } finally {
    await agent.close();
  }
}
