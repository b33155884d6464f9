/**
 * A TCP proxy on 127.0.0.1:0 in front of a registry, standing for a mirror or a pull-through
 * cache that can die: TLS passes through untouched, the bytes sent to clients are counted, and
 * `dieAfter` (or `kill()`) cuts every connection and stops listening, so later connections are
 * refused as from a dead host.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** `127.0.0.1:<port>`. */
  host: string;
  /** Bytes sent from the target to clients, over all connections. */
  served(): number;
  /** Connections accepted so far. */
  connections(): number;
  /** Whether it died (dieAfter reached, or killed). */
  dead(): boolean;
  kill(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string, options: { dieAfter?: number } = {}): Promise<TcpProxy> {
  const colon = target.lastIndexOf(':');
  const targetHost = target.slice(0, colon);
  const targetPort = Number(target.slice(colon + 1));
  const sockets = new Set<Socket>();
  let served = 0;
  let accepted = 0;
  let dead = false;
  const server = createServer((client) => {
    accepted++;
    const upstream = connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    // pipe() in both directions keeps backpressure, and a side that ends ends the other only
    // after what is buffered for it was written (destroying it would drop those bytes).
    upstream.on('data', (chunk: Buffer) => {
      served += chunk.length;
      if (options.dieAfter !== undefined && served >= options.dieAfter) kill();
    });
    upstream.pipe(client);
    client.pipe(upstream);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  const kill = (): void => {
    if (dead) return;
    dead = true;
    server.close();
    for (const s of sockets) s.destroy();
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    served: () => served,
    connections: () => accepted,
    dead: () => dead,
    kill,
    close: async () => {
      kill();
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}
