import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHeartbeater, type HeartbeatInput, type HeartbeatState } from '../../src/conductor/index.ts';
import { AgentError } from '../../src/errors.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { FakeClock, flush } from './fake-clock.ts';

const STATE: HeartbeatState = { nodeUuid: 'node-1', callbackUrl: 'https://192.0.2.10:9999', token: 't'.repeat(43), verifyCaPem: 'PEM', heartbeatTimeout: 300 };

// A scripted client: each heartbeat resolves at once unless told to fail or to hang.
function fakeClient(clock: FakeClock) {
  const calls: { at: number; input: HeartbeatInput }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const failures: AgentError[] = [];
  let hold: Promise<void> | undefined;
  return {
    calls,
    get maxInFlight() { return maxInFlight; },
    failNext(n: number) {
      for (let i = 0; i < n; i++) failures.push(new AgentError('HEARTBEAT_FAILED', 'HTTP 500'));
    },
    holdUntil(p: Promise<void>) { hold = p; },
    async heartbeat(input: HeartbeatInput) {
      calls.push({ at: clock.now(), input });
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        if (hold) {
          const h = hold;
          hold = undefined;
          await Promise.race([h, new Promise((_, reject) => input.signal?.addEventListener('abort', () => reject(new AgentError('CANCELLED', 'aborted'))))]);
        }
        const failure = failures.shift();
        if (failure) throw failure;
      } finally {
        inFlight--;
      }
    },
  };
}

function setup(random = () => 0.5) {
  const clock = new FakeClock();
  const client = fakeClient(clock);
  const heartbeater = createHeartbeater({ client, getState: () => STATE, log: createSilentLogger(), clock, random });
  const start = clock.now();
  const times = Object.assign(() => client.calls.map((c) => c.at - start), { start });
  return { clock, client, heartbeater, times };
}

describe('heartbeater', () => {
  it('beats at once, then every heartbeat_timeout × U(0.3, 0.6)', async () => {
    const { clock, client, heartbeater, times } = setup(() => 0.5); // 0.45 × 300 s = 135 s
    heartbeater.start();
    await flush();
    assert.deepEqual(times(), [0]);
    assert.deepEqual(client.calls[0]?.input.callbackUrl, STATE.callbackUrl);
    assert.equal(client.calls[0]?.input.verifyCaPem, 'PEM');
    await clock.advance(134_999);
    assert.equal(client.calls.length, 1);
    await clock.advance(1);
    await clock.advance(135_000);
    assert.deepEqual(times(), [0, 135_000, 270_000]);
    assert.equal(heartbeater.stats.sent, 3);
    await heartbeater.stop();
  });

  it('spreads intervals over 0.3–0.6 of the timeout', async () => {
    for (const [r, expected] of [[0, 90_000], [0.999999, 180_000]] as const) {
      const { clock, heartbeater, times } = setup(() => r);
      heartbeater.start();
      await clock.advance(200_000);
      assert.ok(Math.abs(times()[1]! - expected) < 1, `random ${r}: ${times()[1]}`);
      await heartbeater.stop();
    }
  });

  it('retries 5 s × U(1, 2) after an error, then returns to the normal interval', async () => {
    const { clock, client, heartbeater, times } = setup(() => 0.5); // error retry 7.5 s
    client.failNext(2);
    heartbeater.start();
    await clock.advance(20_000);
    assert.deepEqual(times(), [0, 7_500, 15_000]);
    assert.equal(heartbeater.stats.failed, 2);
    assert.equal(heartbeater.stats.lastError, undefined);
    await clock.advance(135_000);
    assert.deepEqual(times(), [0, 7_500, 15_000, 150_000]);
    await heartbeater.stop();
  });

  it('force() sends a heartbeat within 0.5 s, however recent the last one, and coalesces calls', async () => {
    const { clock, heartbeater, times } = setup();
    heartbeater.start();
    await clock.advance(100);
    // A command finishes 0.1 s after the first heartbeat: it must not wait for the normal spacing.
    heartbeater.force();
    heartbeater.force();
    await clock.advance(1_000);
    assert.deepEqual(times(), [0, 250]);
    // Long after the last one, a forced heartbeat goes out at once.
    await clock.advance(60_000);
    heartbeater.force();
    await clock.advance(0);
    assert.deepEqual(times(), [0, 250, 61_100]);
    await heartbeater.stop();
  });

  it('force() called in a burst sends at most four heartbeats a second, each within 0.5 s of a call', async () => {
    const { clock, heartbeater, times } = setup();
    heartbeater.start();
    await clock.advance(0);
    const forcedAt: number[] = [];
    for (let i = 0; i < 20; i++) {
      await clock.advance(50);
      forcedAt.push(clock.now() - times.start);
      heartbeater.force();
    }
    await clock.advance(1_000);
    const sent = times().slice(1);
    // The last call (at 1 000 ms) came just after the heartbeat of that moment had started.
    assert.deepEqual(sent, [250, 500, 750, 1_000, 1_250]);
    for (const at of forcedAt) assert.ok(sent.some((s) => s >= at && s - at <= 500), `force at ${at} ms: heartbeats at ${sent.join(', ')}`);
    await heartbeater.stop();
  });

  it('never has two heartbeats in flight; a force during one is sent as soon as it returns', async () => {
    const { clock, client, heartbeater, times } = setup();
    let release!: () => void;
    client.holdUntil(new Promise<void>((resolve) => { release = resolve; }));
    heartbeater.start();
    await clock.advance(0);
    assert.equal(heartbeater.stats.inFlight, true);
    heartbeater.force();
    await clock.advance(300_000); // the first heartbeat hangs for 300 s
    assert.deepEqual(times(), [0]);
    release();
    await clock.advance(0);
    assert.deepEqual(times(), [0, 300_000]);
    assert.equal(client.maxInFlight, 1);
    await heartbeater.stop();
  });

  it('stop() aborts the heartbeat in flight and no more are sent', async () => {
    const { clock, client, heartbeater } = setup();
    client.holdUntil(new Promise<void>(() => undefined));
    heartbeater.start();
    await clock.advance(0);
    assert.equal(client.calls[0]?.input.signal?.aborted, false);
    await heartbeater.stop();
    assert.equal(client.calls[0]?.input.signal?.aborted, true);
    assert.equal(heartbeater.stats.failed, 0);
    await clock.advance(3_600_000);
    heartbeater.force();
    await clock.advance(10_000);
    assert.equal(client.calls.length, 1);
    assert.deepEqual(clock.pending(), []);
  });

  it('stops when the signal given to start() aborts, and can be started again', async () => {
    const { clock, client, heartbeater } = setup();
    const controller = new AbortController();
    heartbeater.start(controller.signal);
    await clock.advance(0);
    controller.abort();
    await clock.advance(600_000);
    assert.equal(client.calls.length, 1);
    heartbeater.start();
    await clock.advance(0);
    assert.equal(client.calls.length, 2);
    await heartbeater.stop();
  });

  it('reads the state afresh for each heartbeat and counts a failing getState as an error', async () => {
    const clock = new FakeClock();
    const client = fakeClient(clock);
    let state: HeartbeatState | undefined;
    const heartbeater = createHeartbeater({
      client, clock, random: () => 0.5, log: createSilentLogger(),
      getState: () => { if (!state) throw new Error('no callback URL yet'); return state; },
    });
    heartbeater.start();
    await clock.advance(0);
    assert.equal(client.calls.length, 0);
    assert.equal(heartbeater.stats.failed, 1);
    state = { ...STATE, status: 'start', statusMessage: 'installing' };
    await clock.advance(7_500);
    assert.equal(client.calls[0]?.input.statusMessage, 'installing');
    await heartbeater.stop();
  });
});
