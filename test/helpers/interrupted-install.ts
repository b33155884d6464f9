/**
 * An agent killed during `execute_bootc_install`'s install phase: the journal entry it left in
 * state_dir, and scripted answers (test/helpers/fake-runner.ts) for cleaning up after it —
 * podman removing its containers by name, the wipe of its disk /dev/vda.
 * @module
 */
import { readFileSync } from 'node:fs';
import type { ScriptedCall } from './fake-runner.ts';
import { wipeAnswers } from './wipe-answers.ts';

export const KILLED_MID_INSTALL = {
  id: '5c6f0c1e-0000-4000-8000-000000000001',
  command: 'deploy.execute_deploy_step',
  started_at: '2026-12-06T01:00:00.000Z',
  step: { interface: 'deploy', step: 'execute_bootc_install' },
  phase: 'install',
  device: '/dev/vda',
  written: true,
  containers: ['bootc-agent-install-0a1b2c3d4e', 'bootc-agent-probe-0a1b2c3d4e'],
};

const listing = JSON.parse(readFileSync(new URL('../fixtures/lsblk-vm-virtio.json', import.meta.url), 'utf8')) as { blockdevices: Array<Record<string, unknown>> };

/** podman's `rm` and `container exists` (gone after `rm` unless `containerSurvives`), then the wipe of /dev/vda. */
export function recoveryAnswers(options: { containerSurvives?: boolean } = {}): ScriptedCall[] {
  return [
    { argv: (a) => a[0] === 'podman' && a[1] === 'rm', times: Infinity },
    { argv: (a) => a[0] === 'podman' && a[1] === 'container' && a[2] === 'exists', exitCode: options.containerSurvives ? 0 : 1, times: Infinity },
    ...wipeAnswers(listing.blockdevices),
  ];
}
