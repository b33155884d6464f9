/**
 * containers-policy.json(5) for the `docker` transport: `insecureAcceptAnything` passes,
 * `reject` refuses, `sigstoreSigned` with public keys is handed to signature verification
 * (src/oci/signatures/, after the digest is resolved), `signedBy` (GPG) and `signedBaseLayer`
 * refuse with OCI_SIGNATURE_REQUIRED because the agent does not verify them, and any other
 * requirement type refuses with OCI_POLICY_REQUIREMENT_UNKNOWN — never a silent pass.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { AgentError } from '../errors.ts';
import { formatName, type ImageReference } from './reference.ts';
import { parseSigstoreRequirement, type SigstoreRequirement } from './signatures/requirement.ts';

export const DEFAULT_POLICY_PATH = '/etc/containers/policy.json';

const Requirement = z.object({ type: z.string() }).loose();
const Requirements = z.array(Requirement).min(1);
export const Policy = z.object({
  default: Requirements,
  transports: z.record(z.string(), z.record(z.string(), Requirements)).optional(),
});
export type Policy = z.infer<typeof Policy>;

const UNVERIFIED_SIGNATURE_TYPES = new Set(['signedBy', 'signedBaseLayer']);

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

/** What policy.json asks of one image: the scope that applied and the signatures still to verify. */
export interface PolicyPlan {
  scope: string;
  signatures: SigstoreRequirement[];
}

/**
 * Evaluates what can be decided without the registry: throws for `reject`, for signature types
 * the agent does not verify and for unknown types; returns the `sigstoreSigned` requirements.
 */
export function checkPolicy(policy: Policy, ref: ImageReference): PolicyPlan {
  const name = formatName(ref);
  const { scope, requirements } = requirementsFor(policy, ref);
  const signatures: SigstoreRequirement[] = [];
  for (const req of requirements) {
    if (req.type === 'insecureAcceptAnything') continue;
    const details = { reference: name, scope, requirement: req.type };
    if (req.type === 'reject') {
      throw new AgentError('OCI_POLICY_REJECTED', `policy.json rejects ${name} (scope "${scope}")`, { details });
    }
    if (req.type === 'sigstoreSigned') {
      signatures.push(parseSigstoreRequirement(req, scope, name));
      continue;
    }
    if (UNVERIFIED_SIGNATURE_TYPES.has(req.type)) {
      throw new AgentError('OCI_SIGNATURE_REQUIRED',
        `policy.json requires a ${req.type} signature for ${name} (scope "${scope}"); this agent verifies sigstoreSigned signatures with public keys only`, { details });
    }
    throw new AgentError('OCI_POLICY_REQUIREMENT_UNKNOWN', `policy.json has an unknown requirement type "${req.type.slice(0, 100)}" for ${name}`, { details });
  }
  return { scope, signatures };
}
