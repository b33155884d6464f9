// The agent version sent as `agent_version` in heartbeats and shown by GET /v1/status.
export const AGENT_VERSION = '0.1.0';
