import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildLsblkArgs, waitForRootDevice, type WaitForRootDeviceOptions } from '../../src/disk/index.ts';
import { createFakeRunner, type ScriptedCall } from '../helpers/fake-runner.ts';

const GIB = 2 ** 30;
const LSBLK = ['lsblk', ...buildLsblkArgs()];

function lsblk(...disks: [kname: string, size: number][]): ScriptedCall {
  const blockdevices = disks.map(([kname, size]) => ({ kname, size, type: 'disk', rota: false }));
  return { argv: LSBLK, stdout: JSON.stringify({ blockdevices }) };
}

// Sysfs and by-path point nowhere so the test never reads the host's disks.
function options(overrides: Partial<WaitForRootDeviceOptions> & Pick<WaitForRootDeviceOptions, 'runner'>): WaitForRootDeviceOptions & { slept: number[] } {
  const slept: number[] = [];
  return {
    selection: {},
    attempts: 3,
    delaySeconds: 2,
    sysRoot: '/nonexistent/sys',
    byPathDir: '/nonexistent/by-path',
    sleep: async (ms) => {
      slept.push(ms);
    },
    ...overrides,
    slept,
  };
}

describe('waitForRootDevice', () => {
  test('found on the first listing: no sleep', async () => {
    const runner = createFakeRunner([lsblk(['sda', 8 * GIB])]);
    const opts = options({ runner });
    const found = await waitForRootDevice(opts);
    assert.equal(found.device.name, '/dev/sda');
    assert.equal(found.attempt, 1);
    assert.deepEqual(opts.slept, []);
  });

  test('retries while the disk has not appeared, sleeping disk_wait_delay between listings', async () => {
    const runner = createFakeRunner([lsblk(), lsblk(['sda', 1 * GIB]), lsblk(['sda', 1 * GIB], ['sdb', 100 * GIB])], { ordered: true });
    const opts = options({ runner, selection: { root_device: { size: '>= 50' } } });
    const found = await waitForRootDevice(opts);
    assert.equal(found.device.name, '/dev/sdb');
    assert.equal(found.attempt, 3);
    assert.deepEqual(found.devices.map((d) => d.name), ['/dev/sda', '/dev/sdb']);
    assert.deepEqual(opts.slept, [2000, 2000]);
    runner.assertDone();
  });

  test('gives up after disk_wait_attempts with the last DEVICE_NOT_FOUND', async () => {
    const runner = createFakeRunner([{ ...lsblk(['sda', 1 * GIB]), times: 3 }]);
    const opts = options({ runner, selection: { root_device: { serial: 'X1' } } });
    await assert.rejects(waitForRootDevice(opts), {
      code: 'DEVICE_NOT_FOUND',
      message: 'No suitable device was found for deployment using these hints {"serial":"X1"}',
    });
    assert.equal(runner.calls.length, 3);
    assert.deepEqual(opts.slept, [2000, 2000]);
  });

  test('malformed hints fail at once, without waiting', async () => {
    const runner = createFakeRunner([lsblk(['sda', 8 * GIB])]);
    const opts = options({ runner, selection: { root_device: { colour: 'red' } } });
    await assert.rejects(waitForRootDevice(opts), { code: 'INVALID_ROOT_DEVICE_HINTS' });
    assert.deepEqual(opts.slept, []);
  });

  test('a failing lsblk fails at once', async () => {
    const runner = createFakeRunner([{ argv: LSBLK, exitCode: 1, stderr: 'lsblk: failed to access sysfs directory' }]);
    await assert.rejects(waitForRootDevice(options({ runner })), { code: 'BLOCK_DEVICE_ERROR', message: /failed to access sysfs/ });
  });

  test('cancellation while sleeping stops the wait', async () => {
    const controller = new AbortController();
    const runner = createFakeRunner([{ ...lsblk(), times: Infinity }]);
    const opts = options({
      runner,
      signal: controller.signal,
      attempts: 10,
      sleep: async (_ms, signal) => {
        controller.abort();
        signal?.throwIfAborted();
      },
    });
    await assert.rejects(waitForRootDevice(opts), { code: 'CANCELLED' });
    assert.equal(runner.calls.length, 1);
  });

  test('the default sleep honours the signal', async () => {
    const controller = new AbortController();
    const runner = createFakeRunner([{ ...lsblk(), times: Infinity }]);
    const opts: WaitForRootDeviceOptions = {
      runner,
      selection: {},
      attempts: 5,
      delaySeconds: 3600,
      signal: controller.signal,
      sysRoot: '/nonexistent/sys',
      byPathDir: '/nonexistent/by-path',
    };
    const waiting = waitForRootDevice(opts);
    setImmediate(() => controller.abort());
    await assert.rejects(waiting, { code: 'CANCELLED' });
  });

  test('an already aborted signal lists nothing', async () => {
    const runner = createFakeRunner([]);
    await assert.rejects(waitForRootDevice(options({ runner, signal: AbortSignal.abort() })), { code: 'CANCELLED' });
    assert.equal(runner.calls.length, 0);
  });
});
