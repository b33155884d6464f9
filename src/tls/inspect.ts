/**
 * Reading back a certificate: which names it covers, until when, and whether a key belongs to it.
 * Used to decide whether a persisted certificate can be served again after an agent restart.
 * @module
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import { AgentError } from '../errors.ts';
import { ipAddressBytes } from './certificate.ts';

export interface CertificateInfo {
  /** SAN IP addresses, each as 4/16 raw bytes in hex (comparable whatever the spelling). */
  ipAddresses: string[];
  dnsNames: string[];
  validFrom: Date;
  validTo: Date;
  /** SHA-256 fingerprint (AA:BB:…), for logs. */
  fingerprint256: string;
}

// Node prints SANs as "DNS:a, IP Address:1.2.3.4, IP Address:2001:DB8:0:0:0:0:0:1".
export function inspectCertificate(certPem: string): CertificateInfo {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new AgentError('TLS_SETUP_FAILED', 'The certificate is not a valid PEM X.509 certificate', { cause: err });
  }
  const ipAddresses: string[] = [];
  const dnsNames: string[] = [];
  for (const entry of (cert.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('IP Address:')) {
      const bytes = ipAddressBytes(entry.slice('IP Address:'.length));
      if (bytes) ipAddresses.push(bytes.toString('hex'));
    } else if (entry.startsWith('DNS:')) {
      dnsNames.push(entry.slice(4).toLowerCase());
    }
  }
  return {
    ipAddresses,
    dnsNames,
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
  };
}

/** Whether the certificate's SAN names `host` (an IP in any spelling, or a DNS name). */
export function certificateCoversHost(info: CertificateInfo, host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare)) return info.ipAddresses.includes(ipAddressBytes(bare)!.toString('hex'));
  return info.dnsNames.includes(bare.toLowerCase());
}

/** Whether `keyPem` is the private key of `certPem` (false for unreadable keys). */
export function keyMatchesCertificate(certPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}
