/**
 * The API's connections: how many are open, from which addresses, which ones have a request in
 * flight, and which one gives way when a new connection comes at a cap.
 *
 * The conductor is a few addresses; pollers may be many connections. Refusing new connections
 * at one cap for all (`server.maxConnections`) would lock the conductor out while pollers hold
 * every slot, so:
 * - an address at `perAddress` connections keeps them: its new connection takes the place of
 *   one of its own that has been idle for a second or more, or is refused. A flood from one
 *   address costs the agent an accept and a close per attempt, not a TLS handshake, and its
 *   connections that poll keep being served;
 * - at `max` connections in all, a new connection takes the place of an idle connection of the
 *   address holding the most: one that has been answered before one that has not sent its
 *   request yet (its TLS handshake may still be running), the least recently used first.
 * A connection with a request in flight is never closed.
 * @module
 */
import type { Server, Socket } from 'node:net';
import type { Logger } from '../log/index.ts';

interface Connection {
  socket: Socket;
  address: string;
  inFlight: number;
  /** When its last request was answered (or it was accepted). */
  idleSince: number;
  /** Whether a request on it has been answered (then it is a keep-alive connection). */
  answered: boolean;
}

export interface ConnectionTracker {
  /** Marks a request in flight on `socket` (the TLS socket or the TCP one); returns its end. */
  begin(socket: Socket): () => void;
  /** Requests in flight on all connections. */
  readonly inFlight: number;
  /** Closes every connection, TLS handshakes in progress included. */
  closeAll(): void;
}

export interface ConnectionCaps {
  max: number;
  perAddress: number;
}

// TLS sockets wrap the TCP socket the server accepted; both have the same peer address and
// port, which name the connection.
const keyOf = (socket: Socket): string | undefined =>
  socket.remoteAddress === undefined ? undefined : `${socket.remoteAddress}|${socket.remotePort}`;

const WARN_EVERY_MS = 60_000;
// Longer than a poller's pause between two requests, shorter than any keep-alive timeout.
const REPLACEABLE_IDLE_MS = 1000;

export function trackConnections(server: Server, caps: ConnectionCaps, log: Logger): ConnectionTracker {
  // Map order is the order of last use: re-inserted on each request and each reply.
  const open = new Map<string, Connection>();
  const perAddress = new Map<string, number>();
  let inFlight = 0;
  const dropped = { closed: 0, refused: 0, warnedAt: -Infinity };

  const count = (address: string) => perAddress.get(address) ?? 0;
  const forget = (key: string, conn: Connection) => {
    if (open.get(key) !== conn) return;
    open.delete(key);
    const left = count(conn.address) - 1;
    if (left > 0) perAddress.set(conn.address, left);
    else perAddress.delete(conn.address);
  };
  const touch = (key: string, conn: Connection) => {
    open.delete(key);
    open.set(key, conn);
  };
  // The idle connection to close for a newcomer: of `address` only when given (and then one
  // answered and idle for REPLACEABLE_IDLE_MS), else of the address holding the most; answered
  // before not yet answered; least recently used first.
  const victim = (address?: string): [string, Connection] | undefined => {
    let best: [string, Connection] | undefined;
    const idleBefore = Date.now() - REPLACEABLE_IDLE_MS;
    for (const entry of open) {
      const conn = entry[1];
      if (conn.inFlight > 0) continue;
      if (address !== undefined && (conn.address !== address || !conn.answered || conn.idleSince > idleBefore)) continue;
      if (!best) {
        best = entry;
        continue;
      }
      const [, b] = best;
      const more = count(conn.address) - count(b.address);
      if (more > 0 || (more === 0 && conn.answered && !b.answered)) best = entry;
    }
    return best;
  };
  const makeRoom = (address: string): boolean => {
    let chosen: [string, Connection] | undefined;
    if (count(address) >= caps.perAddress) chosen = victim(address);
    else if (open.size >= caps.max) chosen = victim();
    else return true;
    if (!chosen) return false;
    forget(chosen[0], chosen[1]);
    chosen[1].socket.destroy();
    dropped.closed++;
    return true;
  };
  const warn = () => {
    const now = Date.now();
    if (now - dropped.warnedAt < WARN_EVERY_MS) return;
    log.warn({ max_connections: caps.max, per_address: caps.perAddress, closed_idle: dropped.closed, refused: dropped.refused }, 'API connection limit reached');
    dropped.warnedAt = now;
  };

  server.on('connection', (socket: Socket) => {
    const key = keyOf(socket);
    const address = socket.remoteAddress;
    if (key === undefined || address === undefined) {
      socket.destroy();
      return;
    }
    const before = dropped.closed;
    if (!makeRoom(address)) {
      dropped.refused++;
      warn();
      socket.destroy();
      return;
    }
    if (dropped.closed !== before) warn();
    const conn: Connection = { socket, address, inFlight: 0, idleSince: Date.now(), answered: false };
    open.set(key, conn);
    perAddress.set(address, count(address) + 1);
    socket.once('close', () => forget(key, conn));
  });

  return {
    begin(socket) {
      inFlight++;
      const key = keyOf(socket);
      const conn = key === undefined ? undefined : open.get(key);
      if (conn && key !== undefined) {
        conn.inFlight++;
        touch(key, conn);
      }
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        inFlight--;
        if (!conn || key === undefined) return;
        conn.inFlight--;
        conn.answered = true;
        conn.idleSince = Date.now();
        if (open.get(key) === conn) touch(key, conn);
      };
    },
    get inFlight() {
      return inFlight;
    },
    closeAll() {
      for (const conn of open.values()) conn.socket.destroy();
      open.clear();
      perAddress.clear();
    },
  };
}
