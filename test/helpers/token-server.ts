/**
 * A small distribution token server (RS256 JWT with an `x5c` header) on 127.0.0.1:0 over TLS,
 * for docker-registry's `auth.token`. Knobs reproduce real-world reply shapes.
 */
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface TokenServerOptions {
  /** PEM certificate + key used both for TLS and for signing (the registry's rootcertbundle). */
  cert: string;
  key: string;
  service: string;
  issuer: string;
  users: Record<string, string>;
  /** Grant `pull` to anonymous requests (default false: anonymous gets no access). */
  anonymousPull?: boolean;
}

export interface TokenServerReplyShape {
  omitExpiresIn?: boolean;
  accessTokenOnly?: boolean;
  expiresIn?: number;
}

export interface TokenServer {
  realm: string;
  requests: { method: string; url: URL; authorization: string | undefined; body: string }[];
  /** Change how replies look (for token-shape tests). */
  shape: TokenServerReplyShape;
  /** A token for `scope` as `user` (test setup pushes with it). */
  issue(user: string | undefined, scopes: readonly string[]): string;
  close(): Promise<void>;
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const x5c = new X509Certificate(options.cert).raw.toString('base64');
  const key = createPrivateKey(options.key);
  const requests: TokenServer['requests'] = [];
  const shape: TokenServerReplyShape = {};

  const issue = (user: string | undefined, scopes: readonly string[]): string => {
    const access = scopes.flatMap((scope) => {
      const m = /^repository:(.+):([a-z,*]+)$/.exec(scope);
      if (!m) return [];
      const wanted = m[2]!.split(',');
      const actions = user ? wanted : options.anonymousPull ? wanted.filter((a) => a === 'pull') : [];
      return [{ type: 'repository', name: m[1]!, actions }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [x5c] }));
    const claims = b64url(JSON.stringify({
      iss: options.issuer, sub: user ?? '', aud: options.service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access,
    }));
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), key);
    return `${header}.${claims}.${b64url(signature)}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const authorization = req.headers.authorization;
    requests.push({ method: req.method ?? 'GET', url, authorization, body });
    let user: string | undefined;
    if (authorization?.startsWith('Basic ')) {
      const decoded = Buffer.from(authorization.slice(6), 'base64').toString();
      const colon = decoded.indexOf(':');
      const name = decoded.slice(0, colon);
      if (colon < 0 || options.users[name] !== decoded.slice(colon + 1)) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"invalid username/password"}');
        return;
      }
      user = name;
    }
    if (req.method === 'POST') {
      res.writeHead(404).end();
      return;
    }
    const token = issue(user, url.searchParams.getAll('scope'));
    const reply: Record<string, unknown> = shape.accessTokenOnly ? { access_token: token } : { token, access_token: token };
    if (!shape.omitExpiresIn) reply['expires_in'] = shape.expiresIn ?? 300;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
  };

  const server = createServer({ cert: options.cert, key: options.key }, (req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `https://127.0.0.1:${port}/token`,
    requests,
    shape,
    issue,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
