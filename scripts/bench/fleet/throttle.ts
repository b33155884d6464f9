/**
 * The origin's network link: a TCP proxy on 127.0.0.1 port 0 in front of the origin registry
 * that lets at most `bytesPerSecond` flow from the origin to its clients, all connections
 * together (one shared link, first come first served), and counts the bytes each way. TLS passes
 * through untouched, so the count includes TLS records and HTTP headers: a few hundred bytes per
 * request on top of the blobs. Requests (client → origin) are counted but not paced.
 * @module
 */
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

export interface ThrottledLink {
  /** `127.0.0.1:<port>`: the origin as the fleet reaches it. */
  host: string;
  /** Bytes the origin sent through the link since the last `resetCounters()`. */
  served(): number;
  /** Bytes clients sent to the origin since the last `resetCounters()`. */
  received(): number;
  /** Connections opened since the last `resetCounters()`. */
  connections(): number;
  resetCounters(): void;
  close(): Promise<void>;
}

/**
 * A shared token bucket: a chunk of `n` bytes may leave once the link has carried everything
 * reserved before it; up to `burstSeconds` of idle time is credited back, like a real link's
 * buffer. Returns the delay in milliseconds before the chunk may be sent.
 */
export function createPacer(bytesPerSecond: number, burstSeconds = 0.05): (n: number) => number {
  let nextFree = 0;
  return (n) => {
    const now = performance.now();
    nextFree = Math.max(nextFree, now - burstSeconds * 1000) + (n / bytesPerSecond) * 1000;
    return Math.max(0, nextFree - now);
  };
}

export async function startThrottledLink(target: { host: string; port: number }, bytesPerSecond: number): Promise<ThrottledLink> {
  const pace = createPacer(bytesPerSecond);
  const sockets = new Set<Socket>();
  let served = 0;
  let received = 0;
  let connections = 0;

  // origin → client, paced: `from` is paused while its chunk waits for the link, so backpressure
  // reaches the origin. Its end (or close) is passed on only once that chunk was written: a
  // response followed at once by the origin closing the connection must arrive whole.
  const pipePaced = (from: Socket, to: Socket) => {
    let pending = false;
    let finished = false;
    const finish = () => {
      finished = true;
      if (!pending) to.end();
    };
    from.on('data', (chunk: Buffer) => {
      served += chunk.length;
      pending = true;
      from.pause();
      setTimeout(() => {
        pending = false;
        if (to.destroyed) return;
        const flushed = to.write(chunk);
        if (finished) to.end();
        else if (flushed) from.resume();
        else to.once('drain', () => from.resume());
      }, pace(chunk.length));
    });
    from.on('end', finish);
    from.on('close', (hadError) => (hadError ? to.destroy() : finish()));
  };

  const server = createServer((client) => {
    connections++;
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    // The client gone, nothing is left to deliver.
    client.on('close', () => upstream.destroy());
    client.on('data', (chunk: Buffer) => { received += chunk.length; });
    client.pipe(upstream);
    pipePaced(upstream, client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    served: () => served,
    received: () => received,
    connections: () => connections,
    resetCounters: () => {
      served = 0;
      received = 0;
      connections = 0;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
