import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { faultClient, imageManifest, serveManifest, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.ts';

let reg: FaultRegistry;
let auth: FaultRegistry;
before(async () => {
  reg = await startFaultRegistry({ ping: false });
  auth = await startFaultRegistry();
  // `/v2/` always challenges.
  reg.route('GET', '/v2/', (_q, res) => res.writeHead(401, { 'www-authenticate': challenge() }).end());
});
after(async () => {
  await reg.close();
  await auth.close();
});

const D = `sha256:${'2'.repeat(64)}`;
const manifest = (n: number): string => imageManifest({ digest: D, size: n, mediaType: 'application/vnd.oci.empty.v1+json' }, [{ digest: D, size: 1 }]);
const code = (c: string) => (e: { code?: string }) => e.code === c;
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

// The registry: Bearer challenge pointing at `auth`; manifests need `Bearer good-<repo>`.
function bearerRegistry(repo: string, check: (req: IncomingMessage, res: ServerResponse) => boolean): string {
  const digest = serveManifest(reg, repo, 't', manifest(repo.length));
  for (const method of ['GET', 'HEAD']) {
    for (const path of [`/v2/${repo}/manifests/t`, `/v2/${repo}/manifests/${digest}`]) {
      const original = (res: ServerResponse): void => {
        res.writeHead(200, { 'docker-content-digest': digest, 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(method === 'GET' ? manifest(repo.length) : undefined);
      };
      reg.route(method, path, (req, res) => (check(req, res) ? original(res) : undefined));
    }
  }
  return digest;
}
const challenge = (extra = ''): string => `Bearer realm="${auth.url}/token",service="svc"${extra}`;


test('token without expires_in lives 60 s: reused at 50 s, renewed before 60 s', async () => {
  let now = 1_000_000;
  let issued = 0;
  auth.route('GET', '/token', (_q, res) => res.writeHead(200).end(JSON.stringify({ token: `good-${++issued}` })));
  bearerRegistry('a/ttl', (req, res) => {
    if (req.headers.authorization?.startsWith('Bearer good-')) return true;
    res.writeHead(401, { 'www-authenticate': challenge() }).end();
    return false;
  });
  const { client } = faultClient([reg, auth], { now: () => now });
  await client.resolve(`oci://${reg.host}/a/ttl:t`);
  assert.equal(issued, 1);
  now += 50_000;
  await client.resolve(`oci://${reg.host}/a/ttl:t`);
  assert.equal(issued, 1);
  now += 5_000;
  await client.resolve(`oci://${reg.host}/a/ttl:t`);
  assert.equal(issued, 2);
  await client.close();
});

test('access_token-only replies and issued_at in the future (no NTP yet) are accepted', async () => {
  auth.route('GET', '/token', (_q, res) => res.writeHead(200).end(JSON.stringify({ access_token: 'good-x', expires_in: 300, issued_at: '2099-01-01T00:00:00Z' })));
  bearerRegistry('a/access', (req, res) => req.headers.authorization === 'Bearer good-x' || (res.writeHead(401, { 'www-authenticate': challenge() }).end(), false));
  const { client } = faultClient([reg, auth]);
  await client.resolve(`oci://${reg.host}/a/access:t`);
  await client.resolve(`oci://${reg.host}/a/access:t`);
  assert.equal(auth.requestsTo('/token').length > 0, true);
  await client.close();
});

test('insufficient_scope: one retry with the announced scope first', async () => {
  const scopes: string[][] = [];
  auth.route('GET', '/token', (q, res) => {
    const s = new URL(q.url ?? '', auth.url).searchParams.getAll('scope');
    scopes.push(s);
    res.writeHead(200).end(JSON.stringify({ token: s.length > 1 ? 'good-wide' : 'narrow' }));
  });
  bearerRegistry('a/scope', (req, res) => {
    if (req.headers.authorization === 'Bearer good-wide') return true;
    res.writeHead(401, { 'www-authenticate': challenge(',scope="repository:a/scope:pull repository:other:pull",error="insufficient_scope"') }).end();
    return false;
  });
  const { client } = faultClient([reg, auth]);
  await client.resolve(`oci://${reg.host}/a/scope:t`);
  assert.deepEqual(scopes.slice(0, 2), [['repository:a/scope:pull'], ['repository:other:pull', 'repository:a/scope:pull']]);
  await client.close();
});

test('invalid_token: the cached token is dropped and fetched again once; a second refusal fails', async () => {
  let issued = 0;
  auth.route('GET', '/token', (_q, res) => res.writeHead(200).end(JSON.stringify({ token: `t${++issued}` })));
  bearerRegistry('a/invalid', (req, res) => {
    if (req.headers.authorization === 'Bearer t2') return true;
    res.writeHead(401, { 'www-authenticate': challenge(',error="invalid_token"') }).end();
    return false;
  });
  const { client } = faultClient([reg, auth]);
  await client.resolve(`oci://${reg.host}/a/invalid:t`);
  assert.equal(issued, 2);
  bearerRegistry('a/never', (_req, res) => (res.writeHead(401, { 'www-authenticate': challenge(',error="invalid_token"') }).end(), false));
  await assert.rejects(client.resolve(`oci://${reg.host}/a/never:t`), code('REGISTRY_AUTH_FAILED'));
  await client.close();
});

test('Basic creds go to the token realm; a refused exchange is REGISTRY_AUTH_FAILED', async () => {
  auth.route('GET', '/token', (q, res) => {
    if (q.headers.authorization !== basic('me', 'pw')) return res.writeHead(401).end();
    return res.writeHead(200).end(JSON.stringify({ token: 'good-basic' }));
  });
  bearerRegistry('a/creds', (req, res) => req.headers.authorization === 'Bearer good-basic' || (res.writeHead(401, { 'www-authenticate': challenge() }).end(), false));
  const ok = faultClient([reg, auth]);
  await ok.client.resolve(`oci://${reg.host}/a/creds:t`, { credentials: { type: 'basic', username: 'me', password: 'pw' } });
  const last = auth.requestsTo('/token').at(-1)!;
  assert.equal(new URL(last.path, auth.url).searchParams.get('account'), 'me');
  await assert.rejects(ok.client.resolve(`oci://${reg.host}/a/creds:t`, { credentials: { type: 'basic', username: 'me', password: 'no' } }), code('REGISTRY_AUTH_FAILED'));
  await ok.client.close();
});

test('identity tokens use the OAuth2 POST, and fall back to GET on 404', async () => {
  let posts = 0;
  auth.route('POST', '/token', async (q, res) => {
    posts++;
    let body = '';
    for await (const c of q) body += String(c);
    const form = new URLSearchParams(body);
    if (posts === 1 && form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === 'rt' && form.get('service') === 'svc') {
      return res.writeHead(200).end(JSON.stringify({ access_token: 'good-oauth' }));
    }
    return res.writeHead(404).end();
  });
  auth.route('GET', '/token', (_q, res) => res.writeHead(200).end(JSON.stringify({ token: 'good-get' })));
  bearerRegistry('a/oauth', (req, res) => req.headers.authorization?.startsWith('Bearer good-') || (res.writeHead(401, { 'www-authenticate': challenge() }).end(), false));
  const { client } = faultClient([reg, auth]);
  await client.resolve(`oci://${reg.host}/a/oauth:t`, { credentials: { type: 'identity-token', token: 'rt' } });
  assert.equal(posts, 1);
  const second = faultClient([reg, auth]);
  await second.client.resolve(`oci://${reg.host}/a/oauth:t`, { credentials: { type: 'identity-token', token: 'rt' } });
  assert.equal(posts, 2);
  assert.equal(auth.requestsTo('/token').at(-1)!.method, 'GET');
  await client.close();
  await second.client.close();
});

test('registry tokens are sent directly; Basic-only registries get Basic on every request', async () => {
  const basicReg = await startFaultRegistry({ ping: false });
  try {
    basicReg.route('GET', '/v2/', (_q, res) => res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end());
    const digest = serveManifest(basicReg, 'b/x', 't', manifest(3));
    const { client } = faultClient(basicReg);
    await client.resolve(`oci://${basicReg.host}/b/x:t`, { credentials: { type: 'basic', username: 'u', password: 'p' } });
    const sent = basicReg.requestsTo('/v2/b/x/');
    assert.ok(sent.length >= 2 && sent.every((r) => r.headers.authorization === basic('u', 'p')));
    const tokenClient = faultClient(basicReg);
    basicReg.route('GET', '/v2/', (_q, res) => res.writeHead(200).end());
    await tokenClient.client.resolve(`oci://${basicReg.host}/b/x@${digest}`, { credentials: { type: 'registry-token', token: 'rt-1' } });
    assert.equal(basicReg.requestsTo(`/v2/b/x/manifests/${digest}`).at(-1)!.headers.authorization, 'Bearer rt-1');
    await client.close();
    await tokenClient.client.close();
  } finally {
    await basicReg.close();
  }
});
