import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { createStateStore, loadOrCreateCertificate, type StateStore } from '../../src/state/index.ts';
import { generateSelfSignedCertificate } from '../../src/tls/index.ts';

const NOW = new Date('2026-08-20T10:00:00Z');
const at = (d: Date) => () => d;

async function store(t: TestContext): Promise<StateStore> {
  const dir = await mkdtemp(join(tmpdir(), 'cert-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return createStateStore(dir);
}

describe('loadOrCreateCertificate', () => {
  it('generates and persists a certificate for the advertised IP, then reuses it after a restart', async (t) => {
    const s = await store(t);
    const first = await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.10', commonName: 'ramdisk', now: at(NOW) });
    assert.equal(first.reused, false);
    assert.equal(new X509Certificate(first.certPem).subjectAltName, 'IP Address:192.0.2.10');
    assert.deepEqual(await s.readCertificate(), { certPem: first.certPem, keyPem: first.keyPem });

    const restarted = createStateStore(s.dir);
    const second = await loadOrCreateCertificate(restarted, { advertiseHost: '192.0.2.10', now: at(new Date(NOW.getTime() + 86_400_000)) });
    assert.equal(second.reused, true);
    assert.equal(second.certPem, first.certPem);
    assert.equal(second.keyPem, first.keyPem);
  });

  it('accepts any spelling of an IPv6 address and uses a DNS SAN for a host name', async (t) => {
    const s = await store(t);
    const v6 = await loadOrCreateCertificate(s, { advertiseHost: '[2001:db8::10]', now: at(NOW) });
    assert.equal(new X509Certificate(v6.certPem).subjectAltName, 'IP Address:2001:DB8:0:0:0:0:0:10');
    assert.equal((await loadOrCreateCertificate(s, { advertiseHost: '2001:db8:0:0::10', now: at(NOW) })).reused, true);
    const named = await loadOrCreateCertificate(s, { advertiseHost: 'agent-1.example.org', now: at(NOW) });
    assert.equal(named.reused, false);
    assert.equal(new X509Certificate(named.certPem).subjectAltName, 'DNS:agent-1.example.org');
  });

  it('replaces a certificate for another address, one expiring within a day, or a mismatched key', async (t) => {
    const s = await store(t);
    const first = await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.10', now: at(NOW) });

    const moved = await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.11', now: at(NOW) });
    assert.equal(moved.reused, false);
    assert.notEqual(moved.certPem, first.certPem);

    const nearlyExpired = new Date(new X509Certificate(moved.certPem).validTo).getTime() - 12 * 3_600_000;
    const renewed = await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.11', now: at(new Date(nearlyExpired)) });
    assert.equal(renewed.reused, false);

    const other = generateSelfSignedCertificate({ ipAddresses: ['192.0.2.11'], commonName: 'x', now: NOW });
    await s.writeCertificate({ certPem: renewed.certPem, keyPem: other.keyPem });
    assert.equal((await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.11', now: at(NOW) })).reused, false);
  });

  it('does not reuse a certificate that is not valid yet (clock jumped back)', async (t) => {
    const s = await store(t);
    await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.10', now: at(NOW) });
    const backwards = new Date(NOW.getTime() - 2 * 3_600_000);
    assert.equal((await loadOrCreateCertificate(s, { advertiseHost: '192.0.2.10', now: at(backwards) })).reused, false);
  });
});
