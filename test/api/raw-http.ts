/**
 * A raw HTTP/1.1 client for the API tests: it writes exactly the bytes a test gives (malformed
 * requests, half-sent bodies) and reads replies off the socket, so the tests see what the server
 * really sends and when it closes the connection.
 * @module
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';

export interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawConnection {
  socket: Socket;
  write(data: string | Buffer): void;
  /** The next complete reply (a 100 Continue counts as one); rejects after `ms` or when the connection closes first. */
  reply(ms?: number): Promise<RawReply>;
  /** Resolves when the server has closed the connection; rejects after `ms`. */
  closed(ms?: number): Promise<void>;
  destroy(): void;
}

function parseHead(head: string): { status: number; headers: Record<string, string> } {
  const [statusLine, ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status, headers };
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms); });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export interface RawOptions {
  /** TLS without verification. */
  tls?: boolean;
  /** Source address, another loopback address (127.0.0.2) for a second client. */
  localAddress?: string;
}

/** Connects to 127.0.0.1:`port`, once connected or handshaken. */
export async function connectRaw(port: number, options: RawOptions = {}): Promise<RawConnection> {
  const where = { host: '127.0.0.1', port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) };
  const socket: Socket = options.tls ? connectTls({ ...where, rejectUnauthorized: false }) : connectTcp(where);
  await new Promise<void>((resolve, reject) => {
    socket.once(options.tls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  let buffered = Buffer.alloc(0);
  let isClosed = false;
  const waiters = new Set<() => void>();
  const wake = () => { for (const w of [...waiters]) w(); };
  socket.on('data', (chunk: Buffer) => { buffered = Buffer.concat([buffered, chunk]); wake(); });
  socket.on('close', () => { isClosed = true; wake(); });
  socket.on('error', () => undefined);

  const take = (): RawReply | undefined => {
    const end = buffered.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const { status, headers } = parseHead(buffered.subarray(0, end).toString('latin1'));
    const length = headers['content-length'] === undefined ? (isClosed ? buffered.length - end - 4 : status < 200 ? 0 : undefined) : Number(headers['content-length']);
    if (length === undefined || buffered.length < end + 4 + length) return undefined;
    const body = buffered.subarray(end + 4, end + 4 + length).toString('utf8');
    buffered = buffered.subarray(end + 4 + length);
    return { status, headers, body };
  };
  // Waits until `check` returns a value; several waits (a reply, the close) may run at once.
  const until = <T>(check: () => T | undefined, ms: number, what: string) => {
    let attempt: (() => void) | undefined;
    return withDeadline(new Promise<T>((resolve, reject) => {
      attempt = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (err) {
          waiters.delete(attempt!);
          reject(err as Error);
          return;
        }
        if (value === undefined) return;
        waiters.delete(attempt!);
        resolve(value);
      };
      waiters.add(attempt);
      attempt();
    }), ms, what).finally(() => { if (attempt) waiters.delete(attempt); });
  };

  return {
    socket,
    write: (data) => { socket.write(data); },
    reply: (ms = 3000) => until(() => {
      const reply = take();
      if (!reply && isClosed) throw new Error('connection closed without a (complete) reply');
      return reply;
    }, ms, 'reply'),
    closed: (ms = 3000) => until(() => (isClosed ? true : undefined), ms, 'close').then(() => undefined),
    destroy: () => socket.destroy(),
  };
}

/**
 * One request on a fresh connection: its reply, and whether the server closed the connection
 * after a reply that said `Connection: close` (false at once for any other reply).
 */
export async function rawRequest(port: number, request: string | Buffer, options: RawOptions & { ms?: number } = {}): Promise<RawReply & { closedAfter: boolean }> {
  const conn = await connectRaw(port, options);
  try {
    conn.write(request);
    const reply = await conn.reply(options.ms);
    const closedAfter = reply.headers['connection'] === 'close' && await conn.closed(options.ms ?? 3000).then(() => true, () => false);
    return { ...reply, closedAfter };
  } finally {
    conn.destroy();
  }
}
