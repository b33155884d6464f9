/**
 * A self-signed certificate for the agent API, built like ironic-python-agent's auto TLS
 * (`IPA tls_utils.py`): EC key, subject = issuer = CN, one **critical** SubjectAlternativeName
 * with the advertised address, ECDSA signature, `notBefore = now − clock skew`.
 *
 * No openssl binary and no npm package: the key comes from `crypto.generateKeyPairSync('ec')`,
 * the to-be-signed part is DER-encoded by ./der.ts and signed with `crypto.sign`.
 * @module
 */
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { AgentError } from '../errors.ts';
import {
  bitString, boolean, explicit, implicit, integer, octetString, oid, sequence, set,
  unsignedInteger, utf8String, x509Time,
} from './der.ts';

export type CertificateCurve = 'P-256' | 'P-384' | 'P-521';
export type SignatureHash = 'sha256' | 'sha384' | 'sha512';

export interface CertificateOptions {
  /** IP addresses for the SAN (IPv4 or IPv6); the conductor connects to one of these. */
  ipAddresses: readonly string[];
  /** Host names for the SAN, when the agent is advertised by name. */
  dnsNames?: readonly string[];
  /** Subject and issuer CN (IPA uses the host name). */
  commonName: string;
  /** Default P-384, as IPA's `ipa-tls-certificate-curve`. */
  curve?: CertificateCurve;
  /** Default sha512, as IPA. */
  hash?: SignatureHash;
  /** Default 30 days, as IPA's auto TLS. */
  validDays?: number;
  /** notBefore is moved back this much (IPA `auto_tls_allowed_clock_skew`, default 3600 s). */
  clockSkewSeconds?: number;
  now?: Date;
}

export interface CertificatePair {
  certPem: string;
  /** PKCS#8 PEM, unencrypted (as IPA writes `agent.key`). */
  keyPem: string;
}

// RFC 5758 §3.2 ecdsa-with-SHA*; RFC 5280 §4.2.1.6 subjectAltName; X.520 commonName.
const SIGNATURE_OIDS: Record<SignatureHash, string> = {
  sha256: '1.2.840.10045.4.3.2',
  sha384: '1.2.840.10045.4.3.3',
  sha512: '1.2.840.10045.4.3.4',
};
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_COMMON_NAME = '2.5.4.3';

const DAY_MS = 86_400_000;

/** The 4 or 16 bytes of an IP address (RFC 5280 iPAddress), or undefined when not an IP. */
export function ipAddressBytes(address: string): Buffer | undefined {
  if (isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  if (!isIPv6(address)) return undefined;
  let text = address.split('%')[0]!;
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function name(commonName: string): Buffer {
  return sequence(set(sequence(oid(OID_COMMON_NAME), utf8String(commonName))));
}

function subjectAltName(ipAddresses: readonly string[], dnsNames: readonly string[]): Buffer {
  const names = [
    ...dnsNames.map((dns) => {
      if (!/^[A-Za-z0-9.*-]+$/.test(dns)) throw new AgentError('TLS_SETUP_FAILED', `Not a DNS name for the certificate: ${dns}`);
      return implicit(2, Buffer.from(dns, 'ascii')); // dNSName [2] IA5String
    }),
    ...ipAddresses.map((ip) => {
      const bytes = ipAddressBytes(ip);
      if (!bytes) throw new AgentError('TLS_SETUP_FAILED', `Not an IP address for the certificate: ${ip}`);
      return implicit(7, bytes); // iPAddress [7] OCTET STRING
    }),
  ];
  // critical: IPA marks it so; required anyway if the subject were empty (RFC 5280 §4.2.1.6).
  return sequence(oid(OID_SUBJECT_ALT_NAME), boolean(true), octetString(sequence(...names)));
}

// 16 random bytes, top bit cleared (positive) and second bit set (no leading zero byte), so the
// serial is always exactly 16 bytes, within RFC 5280's 20-octet limit.
function randomSerial(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes;
}

/**
 * Generate a self-signed leaf certificate that the conductor can use as its own CA bundle
 * (`agent_verify_ca`): Python's `ssl`/`requests` accept a self-signed certificate in the trust
 * store as a one-certificate chain, so it needs no basicConstraints or keyUsage — exactly
 * what IPA generates.
 */
export function generateSelfSignedCertificate(options: CertificateOptions): CertificatePair {
  const dnsNames = options.dnsNames ?? [];
  if (options.ipAddresses.length === 0 && dnsNames.length === 0) {
    throw new AgentError('TLS_SETUP_FAILED', 'A certificate needs at least one IP address or DNS name');
  }
  const hash = options.hash ?? 'sha512';
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000) * 1000;
  const notBefore = new Date(now - (options.clockSkewSeconds ?? 3600) * 1000);
  const notAfter = new Date(now + (options.validDays ?? 30) * DAY_MS);

  let privateKey: KeyObject;
  let publicKey: KeyObject;
  try {
    ({ privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: options.curve ?? 'P-384' }));
  } catch (err) {
    throw new AgentError('TLS_SETUP_FAILED', `Cannot generate an EC key on ${options.curve ?? 'P-384'}`, { cause: err });
  }
  const algorithm = sequence(oid(SIGNATURE_OIDS[hash])); // parameters absent (RFC 5758 §3.2)
  const subject = name(options.commonName);
  const tbs = sequence(
    explicit(0, integer(2)), // v3
    unsignedInteger(randomSerial()),
    algorithm,
    subject, // issuer
    sequence(x509Time(notBefore), x509Time(notAfter)),
    subject,
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(subjectAltName(options.ipAddresses, dnsNames))),
  );
  const signature = sign(hash, tbs, { key: privateKey, dsaEncoding: 'der' });
  const der = sequence(tbs, algorithm, bitString(signature));
  return {
    certPem: toPem('CERTIFICATE', der),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function toPem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
