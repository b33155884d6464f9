/**
 * Replies of the Ironic API, parsed leniently: unknown keys are stripped, so a newer Ironic
 * that adds fields does not break the agent.
 * @module
 */
import { z } from 'zod';

const AnyObject = z.record(z.string(), z.unknown());

const VersionEntry = z.object({ id: z.string().optional(), version: z.string().optional() });

/** `GET /`: the versions document. */
export const VersionsDocument = z.object({
  default_version: VersionEntry.optional(),
  versions: z.array(VersionEntry).optional(),
});
export type VersionsDocument = z.infer<typeof VersionsDocument>;

/** `config` of a lookup reply (Ironic `ramdisk.py` `config()`): the fields the agent uses. */
export const LookupConfig = z.object({
  heartbeat_timeout: z.coerce.number().positive(),
  agent_token: z.string().nullish(),
  agent_token_required: z.boolean().nullish(),
  tls_min_version: z.string().nullish(),
  tls_cipher_suites: z.string().nullish(),
  permitted_image_formats: z.array(z.string()).nullish(),
  disable_deep_image_inspection: z.boolean().nullish(),
  agent_md5_checksum_enable: z.boolean().nullish(),
  agent_skip_bmc_detect: z.boolean().nullish(),
  enable_bios_bootloader_install: z.boolean().nullish(),
});
export type LookupConfig = z.infer<typeof LookupConfig>;

/** `node` of a lookup reply: Ironic sends only these fields (sanitized). */
export const LookupNode = z.object({
  uuid: z.string().min(1),
  properties: AnyObject.optional(),
  instance_info: AnyObject.optional(),
  driver_internal_info: AnyObject.optional(),
  links: z.array(z.unknown()).optional(),
});
export type LookupNode = z.infer<typeof LookupNode>;

// Old Ironic put heartbeat_timeout at the top level instead of in `config` (IPA handles both).
export const LookupReply = z.preprocess(
  (raw) => {
    if (raw && typeof raw === 'object' && !('config' in raw) && 'heartbeat_timeout' in raw) {
      return { ...raw, config: { heartbeat_timeout: (raw as { heartbeat_timeout: unknown }).heartbeat_timeout } };
    }
    return raw;
  },
  z.object({ node: LookupNode, config: LookupConfig }),
);
export type LookupReply = z.infer<typeof LookupReply>;

const isObject = (v: unknown): v is { [key: string]: unknown } => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The human message of an Ironic error body. Ironic answers
 * `{"error_message": "{\"faultcode\": …, \"faultstring\": …}"}` (a JSON string inside JSON);
 * older or proxied replies may carry the object directly, a `title`, or plain text.
 */
export function errorMessageOf(text: string): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    const plain = text.trim();
    return plain ? plain.slice(0, 500) : undefined;
  }
  if (!isObject(body)) return undefined;
  let inner: unknown = body.error_message ?? body;
  if (typeof inner === 'string') {
    const raw = inner;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (!isObject(parsed)) return raw;
      inner = parsed;
    } catch {
      return raw;
    }
  }
  if (!isObject(inner)) return undefined;
  for (const key of ['faultstring', 'title', 'description', 'message']) {
    const value = inner[key];
    if (typeof value === 'string' && value) return value;
  }
  return undefined;
}
