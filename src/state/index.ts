/**
 * Agent state that must survive a restart within one ramdisk boot (token, certificate,
 * callback URL, last lookup), kept under `state_dir` with atomic 0600 writes.
 * @example
 * const store = createStateStore(config.state_dir);
 * const knownToken = (await store.readToken()) ?? config.agent_token;
 * const { certPem, keyPem, reused } = await loadOrCreateCertificate(store, { advertiseHost: '192.0.2.10', log });
 * @module
 */
export { createStateStore, STATE_FILES } from './store.ts';
export type { PersistedNode, StateStore } from './store.ts';
export { loadOrCreateCertificate } from './certificate.ts';
export type { LoadCertificateOptions, LoadedCertificate } from './certificate.ts';
