/**
 * The heartbeat loop (IPA `agent.py` `IronicPythonAgentHeartbeater`): the first heartbeat as
 * soon as started, then every `heartbeat_timeout × U(0.3, 0.6)`, `5 s × U(1, 2)` after an
 * error, and `force()` for "a command finished, look at me now": within 0.25 s of the call
 * (or as soon as the heartbeat in flight returns), at most four a second. Never two in flight.
 * @module
 */
import { toAgentError, type AgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { AgentStatus, IronicClient } from './client.ts';
import { systemClock, type Clock } from './clock.ts';

/** What the next heartbeat says; read afresh before each one. */
export interface HeartbeatState {
  nodeUuid: string;
  callbackUrl: string;
  token: string | undefined;
  verifyCaPem?: string | undefined;
  /** `config.heartbeat_timeout` from lookup, in seconds. */
  heartbeatTimeout: number;
  status?: AgentStatus | undefined;
  statusMessage?: string | undefined;
}

export interface HeartbeaterOptions {
  client: Pick<IronicClient, 'heartbeat'>;
  getState: () => HeartbeatState;
  log: Logger;
  clock?: Clock;
  /** Uniform [0, 1). */
  random?: () => number;
}

export interface HeartbeaterStats {
  sent: number;
  failed: number;
  inFlight: boolean;
  lastSuccessAt: number | undefined;
  lastError: AgentError | undefined;
  /** When the next heartbeat is due (ms since the epoch), if one is scheduled. */
  nextAt: number | undefined;
}

export interface Heartbeater {
  /** Sends the first heartbeat now; `signal` stops the loop like stop(). */
  start(signal?: AbortSignal): void;
  /** Ask for a heartbeat now (coalesced; at most one per 0.25 s, never two in flight). */
  force(): void;
  /** Stops the loop, aborts a heartbeat in flight and waits for it to settle. */
  stop(): Promise<void>;
  readonly stats: HeartbeaterStats;
}

// Every delay is randomised so that a rack of ramdisks booted by one power-on does not
// heartbeat in lock-step and hammer the conductor in bursts (thundering herd): the normal
// interval is spread over 0.3–0.6 × heartbeat_timeout, error retries over 5–10 s.
const MIN_JITTER = 0.3;
const MAX_JITTER = 0.6;
const ERROR_RETRY_MS = 5_000;
const MIN_ERROR_JITTER = 1;
const MAX_ERROR_JITTER = 2;
// A conductor learns that a command finished from the heartbeat that follows it, so a forced
// heartbeat is not held back by the normal spacing; this floor only caps a burst of commands
// finishing back to back (each one forces) at four heartbeats a second.
const FORCED_SPACING_MS = 250;

export function createHeartbeater(options: HeartbeaterOptions): Heartbeater {
  const log = options.log.child({ component: 'heartbeat' });
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const jitter = (value: number, min: number, max: number) => value * (min + (max - min) * random());

  let running = false;
  let forced = false;
  let timer: unknown;
  let inFlight: Promise<void> | undefined;
  let lastAt = Number.NEGATIVE_INFINITY;
  let lastStartAt = Number.NEGATIVE_INFINITY;
  let intervalMs = 0;
  let abort = new AbortController();
  let external: { signal: AbortSignal; onAbort: () => void } | undefined;
  const stats: HeartbeaterStats = { sent: 0, failed: 0, inFlight: false, lastSuccessAt: undefined, lastError: undefined, nextAt: undefined };

  // (Re)arms the single timer: due at the end of the interval, or — when forced — 0.25 s after
  // the last heartbeat started, whichever is sooner. Nothing is armed while one is in flight.
  function schedule(): void {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    stats.nextAt = undefined;
    if (!running || inFlight) return;
    let due = lastAt + intervalMs;
    if (forced) due = Math.min(due, lastStartAt + FORCED_SPACING_MS);
    const wait = Math.max(0, due - clock.now());
    stats.nextAt = clock.now() + wait;
    timer = clock.setTimeout(fire, wait);
  }

  function fire(): void {
    timer = undefined;
    stats.nextAt = undefined;
    if (!running || inFlight) return;
    stats.inFlight = true;
    inFlight = beat().finally(() => {
      inFlight = undefined;
      stats.inFlight = false;
      schedule();
    });
  }

  async function beat(): Promise<void> {
    forced = false;
    lastStartAt = clock.now();
    const signal = abort.signal;
    try {
      const state = options.getState();
      await options.client.heartbeat({
        nodeUuid: state.nodeUuid,
        callbackUrl: state.callbackUrl,
        token: state.token,
        verifyCaPem: state.verifyCaPem,
        status: state.status,
        statusMessage: state.statusMessage,
        signal,
      });
      stats.sent++;
      stats.lastSuccessAt = clock.now();
      stats.lastError = undefined;
      intervalMs = jitter(state.heartbeatTimeout * 1000, MIN_JITTER, MAX_JITTER);
      log.debug({ nextInMs: Math.round(intervalMs) }, 'heartbeat sent');
    } catch (err) {
      if (signal.aborted) return;
      const error = toAgentError(err);
      stats.failed++;
      stats.lastError = error;
      intervalMs = jitter(ERROR_RETRY_MS, MIN_ERROR_JITTER, MAX_ERROR_JITTER);
      const conflict = error.details.conflict === true;
      log[conflict ? 'warn' : 'error']({ err: error, retryInMs: Math.round(intervalMs) }, conflict ? 'heartbeat conflict (node locked), retrying' : 'heartbeat failed, retrying');
    } finally {
      lastAt = clock.now();
    }
  }

  async function stop(): Promise<void> {
    if (!running) {
      await inFlight?.catch(() => undefined);
      return;
    }
    running = false;
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    stats.nextAt = undefined;
    external?.signal.removeEventListener('abort', external.onAbort);
    external = undefined;
    abort.abort(new Error('heartbeater stopped'));
    log.info('stopping heartbeats');
    await inFlight?.catch(() => undefined);
  }

  return {
    start(signal) {
      if (running) return;
      if (signal?.aborted) return;
      running = true;
      abort = new AbortController();
      if (signal) {
        const onAbort = () => void stop();
        signal.addEventListener('abort', onAbort, { once: true });
        external = { signal, onAbort };
      }
      log.info('starting heartbeats');
      fire();
    },
    force() {
      forced = true;
      if (running && !inFlight) schedule();
    },
    stop,
    get stats() {
      return { ...stats };
    },
  };
}
