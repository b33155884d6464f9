/**
 * TLS for the agent API: a self-signed certificate like ironic-python-agent's auto TLS, built
 * with node:crypto and a small DER encoder (no openssl binary, no npm package).
 * @example
 * const { certPem, keyPem } = generateSelfSignedCertificate({ ipAddresses: ['192.0.2.10'], commonName: hostname() });
 * // serve with https.createServer({ cert: certPem, key: keyPem }) and send certPem as agent_verify_ca
 * @example
 * const info = inspectCertificate(certPem);
 * certificateCoversHost(info, '192.0.2.10'); // true
 * @module
 */
export { generateSelfSignedCertificate, ipAddressBytes } from './certificate.ts';
export type { CertificateCurve, CertificateOptions, CertificatePair, SignatureHash } from './certificate.ts';
export { inspectCertificate, certificateCoversHost, keyMatchesCertificate } from './inspect.ts';
export type { CertificateInfo } from './inspect.ts';
