/**
 * Which agent token to use after a lookup (IPA `agent.py` `process_lookup_data`, stricter where
 * IPA only logs): a fresh token of ≥ 32 characters wins; `"******"` means the conductor already
 * handed one out (an earlier lookup, or `ipa-agent-token` on virtual media), so we must already
 * have it; without it the agent can never heartbeat, which is fatal.
 * @module
 */
import { AgentError } from '../errors.ts';

export const MASKED_TOKEN = '******';
export const MIN_TOKEN_LENGTH = 32;

export interface TokenInput {
  /** `config.agent_token` from the lookup reply. */
  received: string | null | undefined;
  /** `config.agent_token_required`; when absent, whether the API version issues tokens (≥ 1.62). */
  required: boolean;
  /** A token we already have: persisted by an earlier run, or from `ipa-agent-token`. */
  known: string | undefined;
}

export type TokenSource = 'lookup' | 'known' | 'none';

export interface ResolvedToken {
  token: string | undefined;
  source: TokenSource;
  /** Something an operator should see in the log. */
  warning?: string;
}

export function resolveAgentToken(input: TokenInput): ResolvedToken {
  const { received, required } = input;
  const known = input.known && input.known.length >= MIN_TOKEN_LENGTH ? input.known : undefined;
  if (received && received !== MASKED_TOKEN && received.length >= MIN_TOKEN_LENGTH) {
    return { token: received, source: 'lookup' };
  }
  let warning: string | undefined;
  if (received === MASKED_TOKEN) {
    warning = 'The conductor masked the agent token ("******"): it was issued before (earlier lookup or ipa-agent-token)';
  } else if (received) {
    warning = `The conductor sent an agent token of ${received.length} characters; tokens shorter than ${MIN_TOKEN_LENGTH} are refused`;
  }
  if (known) return { token: known, source: 'known', ...(warning ? { warning } : {}) };
  if (!required) {
    return {
      token: undefined,
      source: 'none',
      warning: warning ? `${warning}; the conductor does not require a token, continuing without` : 'The conductor issued no agent token and does not require one',
    };
  }
  throw new AgentError(
    'LOOKUP_TOKEN_MISSING',
    received === MASKED_TOKEN
      ? 'Lookup returned a masked agent token ("******") and this agent has none on file (no persisted token, no ipa-agent-token); it cannot authenticate to the conductor'
      : received
        ? `Lookup returned an unusable agent token (${received.length} characters, at least ${MIN_TOKEN_LENGTH} required) and this agent has none on file`
        : 'Lookup returned no agent token although the conductor requires one',
    { details: { received_length: received?.length ?? 0, masked: received === MASKED_TOKEN } },
  );
}
