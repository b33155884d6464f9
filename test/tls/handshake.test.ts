// The certificate must work for what the conductor does with it: `requests.get(agent_url,
// verify=<the PEM from agent_verify_ca>)`, TLS ≥ 1.3 (`[agent]tls_minimum_version`).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { generateSelfSignedCertificate, type CertificatePair } from '../../src/tls/index.ts';

const PYTHON = '/usr/bin/python3';

async function serve(pair: CertificatePair, host: string): Promise<{ server: Server; port: number }> {
  const server = createServer({ cert: pair.certPem, key: pair.keyPem, minVersion: 'TLSv1.3' }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  return { server, port: (server.address() as AddressInfo).port };
}

function tlsConnect(port: number, host: string, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ca, minVersion: 'TLSv1.3' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

// The three ways a conductor's Python may check it: ssl defaults, Python 3.13's strict
// defaults (VERIFY_X509_STRICT | VERIFY_X509_PARTIAL_CHAIN), and requests with verify=<file>.
const PY_CLIENT = `
import ssl, sys, urllib.request
url, cafile = sys.argv[1], sys.argv[2]
for strict in (False, True):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if strict:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    with urllib.request.urlopen(url, context=ctx) as r:
        print("ssl-strict" if strict else "ssl", r.status, r.read().decode())
try:
    import requests
except ImportError:
    print("requests-missing")
else:
    print("requests", requests.get(url, verify=cafile, timeout=10).status_code)
`;

describe('TLS handshake with the generated certificate as the only trusted CA', () => {
  const pair = generateSelfSignedCertificate({ ipAddresses: ['127.0.0.1'], commonName: 'ramdisk' });
  let server: Server;
  let port: number;
  let dir: string;

  before(async () => {
    ({ server, port } = await serve(pair, '127.0.0.1'));
    dir = await mkdtemp(join(tmpdir(), 'tls-'));
    await writeFile(join(dir, 'agent.crt'), pair.certPem);
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('a Node client negotiates TLS 1.3 and authorizes the peer', async () => {
    const socket = await tlsConnect(port, '127.0.0.1', pair.certPem);
    assert.equal(socket.getProtocol(), 'TLSv1.3');
    assert.equal(socket.authorized, true);
    socket.destroy();
  });

  it('a Node client trusting another certificate refuses it', async () => {
    const other = generateSelfSignedCertificate({ ipAddresses: ['127.0.0.1'], commonName: 'other' });
    await assert.rejects(tlsConnect(port, '127.0.0.1', other.certPem), /self[- ]signed|unable to verify|certificate/i);
  });

  it("Python's ssl (default and 3.13-strict) and requests accept it, as the conductor does", async (t) => {
    if (!existsSync(PYTHON)) {
      t.skip(`${PYTHON} is not installed: cannot check the conductor-side (Python) TLS client`);
      return;
    }
    const { stdout } = await promisify(execFile)(PYTHON, ['-c', PY_CLIENT, `https://127.0.0.1:${port}/`, join(dir, 'agent.crt')]);
    assert.match(stdout, /^ssl 200 \{"ok":true\}$/m);
    assert.match(stdout, /^ssl-strict 200 \{"ok":true\}$/m);
    if (stdout.includes('requests-missing')) t.diagnostic('python requests not installed; checked ssl only');
    else assert.match(stdout, /^requests 200$/m);
  });

  it('works the same for an IPv6 advertise address', async (t) => {
    const v6 = generateSelfSignedCertificate({ ipAddresses: ['::1'], commonName: 'ramdisk' });
    let served: { server: Server; port: number };
    try {
      served = await serve(v6, '::1');
    } catch (err) {
      t.skip(`no IPv6 loopback here: ${(err as Error).message}`);
      return;
    }
    t.after(() => new Promise((resolve) => served.server.close(resolve)));
    const socket = await tlsConnect(served.port, '::1', v6.certPem);
    assert.equal(socket.authorized, true);
    socket.destroy();
    if (!existsSync(PYTHON)) return;
    await writeFile(join(dir, 'v6.crt'), v6.certPem);
    const { stdout } = await promisify(execFile)(PYTHON, ['-c', PY_CLIENT, `https://[::1]:${served.port}/`, join(dir, 'v6.crt')]);
    assert.match(stdout, /^ssl-strict 200/m);
  });
});
