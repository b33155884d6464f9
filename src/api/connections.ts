/**
 * The API's connections: how many are open, which ones have a request in flight, and which one
 * gives way when a new connection comes at the cap.
 *
 * Pollers may be many, the conductor is a few addresses: refusing new connections at the cap
 * (`server.maxConnections`) would lock the conductor out while pollers hold every slot. So at
 * the cap a new connection closes the idle connection used least recently (one that has been
 * answered before, then one that has not sent a request yet); a connection with a request in
 * flight is never closed, and when every connection has one, the new connection is refused.
 * @module
 */
import type { Server, Socket } from 'node:net';
import type { Logger } from '../log/index.ts';

interface Connection {
  socket: Socket;
  inFlight: number;
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

// TLS sockets wrap the TCP socket the server accepted; both have the same peer address and
// port, which name the connection.
const keyOf = (socket: Socket): string | undefined =>
  socket.remoteAddress === undefined ? undefined : `${socket.remoteAddress}|${socket.remotePort}`;

const WARN_EVERY_MS = 60_000;

export function trackConnections(server: Server, maxConnections: number, log: Logger): ConnectionTracker {
  // Map order is the order of last use: re-inserted on each request and each reply.
  const open = new Map<string, Connection>();
  let inFlight = 0;
  const dropped = { closed: 0, refused: 0, warnedAt: -Infinity };

  const touch = (key: string, conn: Connection) => {
    open.delete(key);
    open.set(key, conn);
  };
  const closeIdle = (): boolean => {
    for (const answered of [true, false]) {
      for (const [key, conn] of open) {
        if (conn.inFlight > 0 || conn.answered !== answered) continue;
        open.delete(key);
        conn.socket.destroy();
        dropped.closed++;
        return true;
      }
    }
    return false;
  };
  const warn = () => {
    const now = Date.now();
    if (now - dropped.warnedAt < WARN_EVERY_MS) return;
    log.warn({ max_connections: maxConnections, closed_idle: dropped.closed, refused: dropped.refused }, 'API connection limit reached');
    dropped.warnedAt = now;
  };

  server.on('connection', (socket: Socket) => {
    const key = keyOf(socket);
    if (key === undefined) {
      socket.destroy();
      return;
    }
    if (open.size >= maxConnections) {
      const room = closeIdle();
      if (!room) dropped.refused++;
      warn();
      if (!room) {
        socket.destroy();
        return;
      }
    }
    const conn: Connection = { socket, inFlight: 0, answered: false };
    open.set(key, conn);
    socket.once('close', () => {
      if (open.get(key) === conn) open.delete(key);
    });
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
        if (open.get(key) === conn) touch(key, conn);
      };
    },
    get inFlight() {
      return inFlight;
    },
    closeAll() {
      for (const conn of open.values()) conn.socket.destroy();
      open.clear();
    },
  };
}
