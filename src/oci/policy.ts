/**
 * containers-policy.json(5) for the `docker` transport. We do not verify signatures yet, so:
 * `insecureAcceptAnything` passes, `reject` refuses, `signedBy`/`sigstoreSigned` refuse with
 * OCI_SIGNATURE_REQUIRED, and any other requirement type refuses — never a silent pass.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import { formatName, type ImageReference } from './reference.ts';

export const DEFAULT_POLICY_PATH = '/etc/containers/policy.json';

const Requirement = z.object({ type: z.string() }).loose();
const Requirements = z.array(Requirement).min(1);
export const Policy = z.object({
  default: Requirements,
  transports: z.record(z.string(), z.record(z.string(), Requirements)).optional(),
});
export type Policy = z.infer<typeof Policy>;

const SIGNATURE_TYPES = new Set(['signedBy', 'sigstoreSigned', 'signedBaseLayer']);

export function parsePolicy(text: string, source = 'policy.json'): Policy {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AgentError('REGISTRY_CONFIG_INVALID', `${source} is not JSON`, { cause: err, details: { source } });
  }
  const parsed = Policy.safeParse(json);
  if (!parsed.success) {
    throw new AgentError('REGISTRY_CONFIG_INVALID', `${source} is not a valid policy (a "default" list of requirements is required)`, {
      details: { source },
    });
  }
  return parsed.data;
}

/** undefined when the file does not exist. */
export async function loadPolicy(path = DEFAULT_POLICY_PATH): Promise<Policy | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AgentError('REGISTRY_CONFIG_INVALID', `Cannot read ${path}`, { cause: err, details: { path } });
  }
  return parsePolicy(text, path);
}

// containers/image docker transport: full name, then each parent namespace, then `*.domain` wildcards.
export function policyScopes(ref: ImageReference): string[] {
  const scopes = [formatName(ref)];
  const parts = `${ref.registry}/${ref.repository}`.split('/');
  for (let n = parts.length; n >= 1; n--) scopes.push(parts.slice(0, n).join('/'));
  const host = ref.registry.replace(/:[0-9]+$/, '');
  const labels = host.split('.');
  for (let i = 1; i < labels.length; i++) scopes.push(`*.${labels.slice(i).join('.')}`);
  return scopes;
}

/** The requirements that apply to `ref` and the scope they came from. */
export function requirementsFor(policy: Policy, ref: ImageReference): { scope: string; requirements: Policy['default'] } {
  const docker = policy.transports?.['docker'] ?? {};
  for (const scope of policyScopes(ref)) {
    const reqs = docker[scope];
    if (reqs) return { scope, requirements: reqs };
  }
  if (docker['']) return { scope: 'docker', requirements: docker[''] };
  return { scope: 'default', requirements: policy.default };
}

/** Throws unless every requirement for `ref` is `insecureAcceptAnything`. */
export function checkPolicy(policy: Policy, ref: ImageReference): void {
  const name = formatName(ref);
  const { scope, requirements } = requirementsFor(policy, ref);
  for (const req of requirements) {
    if (req.type === 'insecureAcceptAnything') continue;
    const details = { reference: name, scope, requirement: req.type };
    if (req.type === 'reject') {
      throw new AgentError('OCI_POLICY_REJECTED', `policy.json rejects ${name} (scope "${scope}")`, { details });
    }
    if (SIGNATURE_TYPES.has(req.type)) {
      throw new AgentError('OCI_SIGNATURE_REQUIRED',
        `policy.json requires a ${req.type} signature for ${name} (scope "${scope}"); this agent cannot verify signatures yet`, { details });
    }
    throw new AgentError('OCI_POLICY_REJECTED', `policy.json has an unsupported requirement type "${req.type}" for ${name}`, { details });
  }
}
