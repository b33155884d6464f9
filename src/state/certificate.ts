/**
 * The agent's certificate for the whole ramdisk lifetime: reuse the persisted one when it still
 * fits, else generate and persist a new one. The conductor pins the first `agent_verify_ca` it
 * receives and refuses heartbeats carrying another ("Detected change in ramdisk provided
 * agent_verify_ca"), so a restart must serve the same certificate.
 * @module
 */
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { AgentError, toAgentError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import {
  certificateCoversHost, generateSelfSignedCertificate, inspectCertificate, keyMatchesCertificate,
  type CertificateCurve, type CertificatePair,
} from '../tls/index.ts';
import type { StateStore } from './store.ts';

export interface LoadCertificateOptions {
  /** The host put in the callback URL: an IP (SAN iPAddress) or a name (SAN dNSName). */
  advertiseHost: string;
  commonName?: string;
  curve?: CertificateCurve;
  validDays?: number;
  clockSkewSeconds?: number;
  /** A persisted certificate expiring sooner than this is replaced (default one day). */
  minRemainingMs?: number;
  now?: () => Date;
  log?: Logger;
}

export interface LoadedCertificate extends CertificatePair {
  /** True when the persisted certificate was reused. */
  reused: boolean;
}

const DAY_MS = 86_400_000;

// Why a persisted certificate cannot be served again, or undefined when it can.
function unusableBecause(pair: CertificatePair, host: string, now: Date, minRemainingMs: number): string | undefined {
  let info;
  try {
    info = inspectCertificate(pair.certPem);
  } catch {
    return 'not a readable certificate';
  }
  if (!keyMatchesCertificate(pair.certPem, pair.keyPem)) return 'the key does not belong to the certificate';
  if (!certificateCoversHost(info, host)) return `its SubjectAlternativeName does not name ${host}`;
  if (info.validFrom.getTime() > now.getTime()) return `it is not valid before ${info.validFrom.toISOString()}`;
  if (info.validTo.getTime() - now.getTime() < minRemainingMs) return `it expires at ${info.validTo.toISOString()}`;
  return undefined;
}

export async function loadOrCreateCertificate(store: StateStore, options: LoadCertificateOptions): Promise<LoadedCertificate> {
  const host = options.advertiseHost.replace(/^\[(.*)\]$/, '$1');
  const now = options.now?.() ?? new Date();
  const log = options.log?.child({ component: 'tls' });
  const persisted = await store.readCertificate();
  if (persisted) {
    const reason = unusableBecause(persisted, host, now, options.minRemainingMs ?? DAY_MS);
    if (reason === undefined) {
      log?.info({ host, dir: store.dir }, 'reusing the persisted TLS certificate');
      return { ...persisted, reused: true };
    }
    // The conductor will refuse a different agent_verify_ca if it already saw the old one;
    // there is nothing better to do than to say so loudly.
    log?.warn({ host, reason }, 'persisted TLS certificate cannot be reused; generating a new one (a conductor that saw the old one will refuse it)');
  }
  let pair: CertificatePair;
  try {
    pair = generateSelfSignedCertificate({
      ipAddresses: isIP(host) ? [host] : [],
      dnsNames: isIP(host) ? [] : [host],
      commonName: options.commonName ?? (hostname() || host),
      curve: options.curve ?? 'P-384',
      validDays: options.validDays ?? 30,
      clockSkewSeconds: options.clockSkewSeconds ?? 3600,
      now,
    });
  } catch (err) {
    const e = toAgentError(err);
    throw e.code === 'TLS_SETUP_FAILED' ? e : new AgentError('TLS_SETUP_FAILED', `Cannot generate a TLS certificate for ${host}: ${e.message}`, { cause: err });
  }
  await store.writeCertificate(pair);
  log?.info({ host, dir: store.dir }, 'generated a self-signed TLS certificate');
  return { ...pair, reused: false };
}
