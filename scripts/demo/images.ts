/**
 * Removing the names a demo or test left in the host's podman storage (the agent pulls the
 * image it installs). Only names under the given registry host are touched; an image that
 * still has another name (a cached build) keeps it.
 * @module
 */
import type { CommandRunner } from '../../src/exec/index.ts';

export async function removeImagesFrom(runner: CommandRunner, registryHost: string): Promise<string[]> {
  const { stdout } = await runner.run('podman', ['images', '--format', 'json'], { timeoutMs: 60_000 });
  const images = JSON.parse(stdout || '[]') as Array<{ Id: string; Names?: string[] }>;
  const names = images.flatMap((i) => i.Names ?? []).filter((n) => n.startsWith(`${registryHost}/`));
  for (const name of names) {
    // A name by digest whose image an earlier name's rmi already removed answers "tag not known"
    // (exit 125), which --ignore does not cover: it is gone all the same.
    await runner.run('podman', ['rmi', '--ignore', '--', name], { timeoutMs: 60_000 }).catch((err: unknown) => {
      if (!/tag not known/.test(String((err as { stderrTail?: string }).stderrTail ?? ''))) throw err;
    });
  }
  return names;
}
