import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createCleanSteps } from '../../src/commands/index.ts';
import { buildLsblkArgs } from '../../src/disk/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { createFakeRunner } from '../helpers/fake-runner.ts';
import { wipeAnswers } from '../helpers/wipe-answers.ts';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/lsblk-sata-sas-nvme.json', import.meta.url), 'utf8')) as { blockdevices: Array<Record<string, unknown>> };

// Answers every erase command plausibly; the listing itself comes from a captured fixture.
function machine() {
  return createFakeRunner([
    { argv: ['lsblk', ...buildLsblkArgs()], stdout: JSON.stringify(fixture), times: Infinity },
    ...wipeAnswers(fixture.blockdevices),
  ]);
}

describe('clean step erase_devices_metadata', () => {
  it('is advertised at IPA\'s priority and erases every disk except skipped ones', async () => {
    const runner = machine();
    const [step] = createCleanSteps({ runner, includeLoopDevices: false });
    assert.equal(step!.step, 'erase_devices_metadata');
    assert.equal(step!.priority, 99);
    const result = await step!.run({}, {
      signal: new AbortController().signal, log: createSilentLogger(), reportProgress: () => undefined,
      node: { properties: { skip_block_devices: [{ name: '/dev/sdb' }] } }, ports: [],
    }) as { erased: string[]; skipped: Array<{ name: string; reason: string }> };
    assert.deepEqual(result.erased.sort(), ['/dev/nvme0n1', '/dev/sda']);
    assert.deepEqual(result.skipped, [{ name: '/dev/sdb', reason: 'skip_block_devices' }]);
    const touched = runner.commandLines().filter((l) => l.startsWith('wipefs') || l.startsWith('sgdisk'));
    assert.ok(touched.some((l) => l.endsWith('/dev/sda')));
    assert.ok(!touched.some((l) => l.includes('/dev/sdb')), 'a skipped disk is never written');
    assert.ok(!touched.some((l) => l.includes('sr0')), 'removable read-only media are not disks to erase');
  });
});
