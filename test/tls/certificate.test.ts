import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  certificateCoversHost, generateSelfSignedCertificate, inspectCertificate, ipAddressBytes, keyMatchesCertificate,
} from '../../src/tls/index.ts';

const NOW = new Date('2026-08-20T10:00:00.000Z');
const OPENSSL = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => existsSync(p));

describe('generateSelfSignedCertificate', () => {
  const pair = generateSelfSignedCertificate({ ipAddresses: ['192.0.2.10', '2001:db8::10'], commonName: 'ramdisk-1', now: NOW });
  const cert = new X509Certificate(pair.certPem);

  it('is a self-signed certificate that Node parses and verifies', () => {
    assert.equal(cert.subject, 'CN=ramdisk-1');
    assert.equal(cert.issuer, 'CN=ramdisk-1');
    assert.ok(cert.verify(cert.publicKey), 'signature verifies with its own public key');
    assert.ok(cert.checkIssued(cert));
    assert.ok(cert.checkPrivateKey(createPrivateKey(pair.keyPem)));
    assert.equal(cert.ca, false);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
    assert.match(pair.keyPem, /^-----BEGIN PRIVATE KEY-----\n/); // PKCS#8 like IPA
  });

  it('names the IPv4 and IPv6 addresses in the SubjectAlternativeName', () => {
    assert.equal(cert.subjectAltName, 'IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:10');
    assert.equal(cert.checkIP('192.0.2.10'), '192.0.2.10');
    assert.equal(cert.checkIP('2001:db8::10'), '2001:db8::10');
    assert.equal(cert.checkIP('192.0.2.11'), undefined);
  });

  it('is valid from now − 1 h (clock skew) for 30 days', () => {
    assert.equal(new Date(cert.validFrom).toISOString(), '2026-08-20T09:00:00.000Z');
    assert.equal(new Date(cert.validTo).toISOString(), '2026-09-19T10:00:00.000Z');
  });

  it('has a random positive 16-byte serial', () => {
    const other = new X509Certificate(generateSelfSignedCertificate({ ipAddresses: ['192.0.2.10'], commonName: 'x', now: NOW }).certPem);
    assert.match(cert.serialNumber, /^[4-7][0-9A-F]{31}$/);
    assert.notEqual(cert.serialNumber, other.serialNumber);
  });

  it('supports the other curves, hashes, DNS names and validity periods', () => {
    const p256 = new X509Certificate(generateSelfSignedCertificate({
      ipAddresses: [], dnsNames: ['agent.example.org'], commonName: 'n', curve: 'P-256', hash: 'sha384', validDays: 1, clockSkewSeconds: 0, now: NOW,
    }).certPem);
    assert.equal(p256.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(p256.subjectAltName, 'DNS:agent.example.org');
    assert.equal(p256.checkHost('agent.example.org'), 'agent.example.org');
    assert.equal(new Date(p256.validFrom).toISOString(), NOW.toISOString());
    const p521 = new X509Certificate(generateSelfSignedCertificate({ ipAddresses: ['::1'], commonName: 'n', curve: 'P-521', now: NOW }).certPem);
    assert.equal(p521.publicKey.asymmetricKeyDetails?.namedCurve, 'secp521r1');
    assert.ok(p521.verify(p521.publicKey));
  });

  it('switches to GeneralizedTime after 2049', () => {
    const late = new X509Certificate(generateSelfSignedCertificate({ ipAddresses: ['192.0.2.1'], commonName: 'n', now: new Date('2049-12-20T00:00:00Z') }).certPem);
    assert.equal(new Date(late.validTo).toISOString(), '2050-01-19T00:00:00.000Z');
  });

  it('refuses certificates without names and addresses that are not IPs', () => {
    assert.throws(() => generateSelfSignedCertificate({ ipAddresses: [], commonName: 'n' }), { code: 'TLS_SETUP_FAILED' });
    assert.throws(() => generateSelfSignedCertificate({ ipAddresses: ['host.example'], commonName: 'n' }), { code: 'TLS_SETUP_FAILED' });
    assert.throws(() => generateSelfSignedCertificate({ ipAddresses: [], dnsNames: ['bad name'], commonName: 'n' }), { code: 'TLS_SETUP_FAILED' });
  });

  it('openssl sees a critical SAN, secp384r1 and ecdsa-with-SHA512', async (t) => {
    if (!OPENSSL) {
      t.skip('openssl binary not installed');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'cert-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'c.pem'), pair.certPem);
    const { stdout } = await promisify(execFile)(OPENSSL, ['x509', '-in', join(dir, 'c.pem'), '-noout', '-text']);
    assert.match(stdout, /X509v3 Subject Alternative Name: critical\n\s+IP Address:192\.0\.2\.10, IP Address:2001:DB8:0:0:0:0:0:10/);
    assert.match(stdout, /ASN1 OID: secp384r1/);
    assert.match(stdout, /Signature Algorithm: ecdsa-with-SHA512/);
    assert.match(stdout, /Version: 3 \(0x2\)/);
    assert.doesNotMatch(stdout, /Basic Constraints/); // exactly like IPA: SAN is the only extension
    const verify = await promisify(execFile)(OPENSSL, ['verify', '-CAfile', join(dir, 'c.pem'), '-attime', String(NOW.getTime() / 1000), join(dir, 'c.pem')]);
    assert.match(verify.stdout, /: OK/);
  });
});

describe('reading a certificate back', () => {
  const pair = generateSelfSignedCertificate({ ipAddresses: ['2001:db8::10', '::ffff:192.0.2.1'], dnsNames: ['Agent.Example'], commonName: 'n', now: NOW });

  it('normalises addresses so any spelling matches', () => {
    const info = inspectCertificate(pair.certPem);
    assert.ok(certificateCoversHost(info, '2001:DB8:0::10'));
    assert.ok(certificateCoversHost(info, '[2001:db8::10]'));
    assert.ok(certificateCoversHost(info, '::ffff:c000:201'));
    assert.ok(certificateCoversHost(info, 'agent.example'));
    assert.ok(!certificateCoversHost(info, '2001:db8::11'));
    assert.ok(!certificateCoversHost(info, 'other.example'));
    assert.equal(info.validTo.toISOString(), '2026-09-19T10:00:00.000Z');
  });

  it('knows whether a key belongs to the certificate', () => {
    const other = generateSelfSignedCertificate({ ipAddresses: ['192.0.2.1'], commonName: 'n' });
    assert.ok(keyMatchesCertificate(pair.certPem, pair.keyPem));
    assert.ok(!keyMatchesCertificate(pair.certPem, other.keyPem));
    assert.ok(!keyMatchesCertificate(pair.certPem, 'not a key'));
    assert.throws(() => inspectCertificate('garbage'), { code: 'TLS_SETUP_FAILED' });
  });

  it('encodes IP addresses as RFC 5280 iPAddress bytes', () => {
    assert.equal(ipAddressBytes('192.0.2.1')?.toString('hex'), 'c0000201');
    assert.equal(ipAddressBytes('::1')?.toString('hex'), '00000000000000000000000000000001');
    assert.equal(ipAddressBytes('fe80::1%eth0')?.toString('hex'), 'fe800000000000000000000000000001');
    assert.equal(ipAddressBytes('::ffff:192.0.2.1')?.toString('hex'), '00000000000000000000ffffc0000201');
    assert.equal(ipAddressBytes('2001:db8:1:2:3:4:5:6')?.toString('hex'), '20010db8000100020003000400050006');
    assert.equal(ipAddressBytes('example.org'), undefined);
  });
});
