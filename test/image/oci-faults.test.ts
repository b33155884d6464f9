/**
 * oci:// images from the fault-injecting registry: a blob whose bytes do not match its digest
 * (detected only at the end, after the disk was written → error and disk wiped), and a blob
 * cut off mid-transfer (resumed with Range, written correctly).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentError } from '../../src/errors.ts';
import { createExecaRunner } from '../../src/exec/index.ts';
import { writeArtifactToTarget } from '../../src/image/index.ts';
import { faultClient, imageManifest, sendTruncated, serveBlob, serveManifest, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';
import { hasNoSignature, makeGptImage, readHead, suiteLoopDevice, tempDir, toolMissing } from './helpers.ts';

const EMPTY = Buffer.from('{}');
const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function artifact(reg: FaultRegistry, repo: string, tag: string, layer: { digest: string; size: number }, title = 'disk.raw'): string {
  serveBlob(reg, repo, EMPTY);
  return serveManifest(reg, repo, tag, imageManifest(
    { digest: sha256(EMPTY), size: EMPTY.length, mediaType: 'application/vnd.oci.empty.v1+json' },
    [{ ...layer, mediaType: 'application/vnd.oci.image.layer.v1.tar', annotations: { 'org.opencontainers.image.title': title } }],
    { artifactType: 'application/vnd.unknown.artifact.v1' },
  ));
}

describe('oci:// images from a fault-injecting registry', { skip: toolMissing('sgdisk') }, () => {
  const runner = createExecaRunner();
  let reg: FaultRegistry;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let image: Buffer;

  before(async () => {
    tmp = await tempDir('image-faults-');
    reg = await startFaultRegistry();
    image = await makeGptImage(tmp.dir, 4);
  });
  after(async () => {
    await reg?.close();
    await tmp?.cleanup();
  });

  test('a transfer cut off mid-blob is resumed and written correctly', async () => {
    const digest = sha256(image);
    artifact(reg, 'disks/cut', 'v1', { digest, size: image.length });
    reg.route('GET', `/v2/disks/cut/blobs/${digest}`, (req, res, hit) => {
      if (hit === 1) return sendTruncated(res, image, 1024 * 1024 + 17);
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      assert.ok(m, 'resume uses Range');
      const start = Number(m[1]);
      res.writeHead(206, { 'content-range': `bytes ${start}-${image.length - 1}/${image.length}`, 'content-length': String(image.length - start) });
      res.end(image.subarray(start));
    });
    const { client } = faultClient(reg);
    try {
      const out = join(tmp.dir, 'cut.raw');
      const result = await writeArtifactToTarget({ source: `oci://${reg.host}/disks/cut:v1`, target: out, oci: client, runner, platform: { architecture: 'amd64' } });
      assert.equal(result.digest, digest);
      assert.equal(hex(await readFile(out)), hex(image));
    } finally {
      await client.close();
    }
  });

  describe('to a real loop device', () => {
    const loop = suiteLoopDevice(() => tmp.dir, 16);

    test('bytes that do not match the blob digest: OCI_DIGEST_MISMATCH, the written disk is wiped', async (t) => {
      if (loop.reason) return t.skip(loop.reason);
      // Same size, same GPT at the start, different tail: detected only at the end of the blob.
      const forged = Buffer.concat([image.subarray(0, image.length - 4096), randomBytes(4096)]);
      const digest = sha256(image);
      artifact(reg, 'disks/forged', 'v1', { digest, size: image.length });
      serveBlob(reg, 'disks/forged', forged, digest);
      const { client } = faultClient(reg);
      try {
        await assert.rejects(writeArtifactToTarget({ source: `oci://${reg.host}/disks/forged:v1`, target: loop.device, oci: client, runner, platform: { architecture: 'amd64' } }), (e: unknown) => {
          assert.ok(e instanceof AgentError);
          assert.equal(e.code, 'OCI_DIGEST_MISMATCH', e.message);
          assert.equal(e.details.cleanup, 'wiped');
          assert.ok(Number(e.details.bytes_written) > 0, 'writing had started');
          return true;
        });
      } finally {
        await client.close();
      }
      assert.ok(hasNoSignature(loop.device), 'blkid still finds a partition table');
      assert.ok((await readHead(loop.device, 33 * 512)).every((b) => b === 0), 'primary GPT area not zeroed');
    });
  });
});
