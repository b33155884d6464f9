/**
 * The one error type of the agent and its code table.
 *
 * Callers branch on `err.code`, never on `instanceof` (errors may cross module copies).
 * `status` is the HTTP status used when the error reaches the agent API; `type` is the
 * ironic-python-agent class name sent in `command_error.type`, so a conductor that reads
 * IPA errors sees familiar names. docs/errors.md is generated from this table (`npm run
 * docs`) and test/docs.test.ts checks it.
 * @module
 */

// code → HTTP status, IPA-compatible type name, and the meaning documented in docs/errors.md.
export const ERROR_CODES = {
  CONFIG_INVALID: { status: 500, type: 'InvalidConfiguration', meaning: 'A configuration value (kernel command line, file or environment) is invalid; the agent does not start.' },
  INVALID_REQUEST: { status: 400, type: 'InvalidContentError', meaning: 'The HTTP request body or query is malformed (not JSON, wrong types, unknown or missing fields).' },
  INVALID_COMMAND: { status: 400, type: 'InvalidCommandError', meaning: 'The command name is not `<extension>.<command>` or the extension has no such command.' },
  INVALID_PARAMS: { status: 400, type: 'InvalidCommandParamsError', meaning: 'The command parameters do not match what the command accepts.' },
  UNAUTHORIZED: { status: 401, type: 'Unauthorized', meaning: 'The `agent_token` query parameter is missing or wrong.' },
  NOT_FOUND: { status: 404, type: 'RequestedObjectNotFoundError', meaning: 'Unknown route, extension or command id.' },
  METHOD_NOT_ALLOWED: { status: 405, type: 'MethodNotAllowed', meaning: 'The route exists but not for this HTTP method.' },
  AGENT_BUSY: { status: 409, type: 'AgentIsBusy', meaning: 'Another command is still running; only one runs at a time.' },
  PAYLOAD_TOO_LARGE: { status: 413, type: 'PayloadTooLarge', meaning: 'The request body exceeds `max_request_body_bytes`.' },
  REQUEST_JSON_TOO_COMPLEX: { status: 413, type: 'PayloadTooLarge', meaning: 'The JSON request body has more than `api_max_json_entries` object members and array items, or is nested deeper than 64 levels; it is refused before it is parsed.' },
  REQUEST_TIMEOUT: { status: 408, type: 'RequestTimeout', meaning: 'The request headers did not arrive within `api_header_timeout`, or the whole request (body included) within `api_body_timeout`; the connection is closed.' },
  REQUEST_HEADERS_TOO_LARGE: { status: 431, type: 'RequestHeaderFieldsTooLarge', meaning: 'The request line and headers together exceed 16 KiB; the connection is closed.' },
  MALFORMED_HTTP_REQUEST: { status: 400, type: 'InvalidContentError', meaning: 'The HTTP request itself is malformed: the parser refused it (duplicate Content-Length, Content-Length with Transfer-Encoding, bad chunked encoding, bad characters) or its target is not an origin-form path (`/v1/...?...`) nor an http(s) URL.' },
  API_OVERLOADED: { status: 503, type: 'ServiceUnavailable', meaning: 'More than `api_max_requests` requests are being answered at once; the reply says `Retry-After: 1`.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, type: 'InvalidContentError', meaning: 'A request body was sent with a content type other than JSON.' },
  COMMAND_FAILED: { status: 500, type: 'CommandExecutionError', meaning: 'An external program exited non-zero; details carry its argv, exit code and the tail of stderr.' },
  COMMAND_NOT_FOUND: { status: 500, type: 'CommandExecutionError', meaning: 'An external program the agent needs is not installed in the ramdisk.' },
  COMMAND_TIMEOUT: { status: 500, type: 'CommandExecutionError', meaning: 'An external program did not finish within its time limit and was killed.' },
  CANCELLED: { status: 500, type: 'CommandExecutionError', meaning: 'The operation was cancelled (agent shutdown or an abort signal).' },
  COMMAND_INTERRUPTED: { status: 500, type: 'CommandExecutionError', meaning: 'The agent was killed, crashed or stopped while the command ran; after its restart the command is listed FAILED under its original id. Its containers were removed, its disk wiped if it had been written, its temporary files removed; details name the phase, the device and that clean-up.' },
  VERSION_MISMATCH: { status: 409, type: 'VersionMismatch', meaning: 'The conductor sent a `deploy_version`/`clean_version` that differs from the agent\'s hardware manager versions.' },
  STEP_NOT_FOUND: { status: 400, type: 'HardwareManagerMethodNotFound', meaning: 'The requested deploy/clean step is not provided by this agent.' },
  STEP_DISABLED: { status: 500, type: 'CommandExecutionError', meaning: 'The step was disabled by the operator (for example `disable_bootc_deploy`).' },
  UNSUPPORTED_COMMAND: { status: 500, type: 'CommandExecutionError', meaning: 'A command the IPA protocol defines but this agent deliberately does not implement.' },
  DEVICE_NOT_FOUND: { status: 404, type: 'DeviceNotFound', meaning: 'No block device matches the root device hints (or none is large enough).' },
  INVALID_ROOT_DEVICE_HINTS: { status: 400, type: 'InvalidCommandParamsError', meaning: 'The root device hints are malformed (unknown hint, bad operator or value).' },
  BLOCK_DEVICE_ERROR: { status: 500, type: 'BlockDeviceError', meaning: 'Listing or erasing block devices failed.' },
  INVENTORY_FAILED: { status: 500, type: 'HardwareError', meaning: 'The hardware inventory could not be collected.' },
  LOOKUP_FAILED: { status: 500, type: 'LookupNodeError', meaning: 'The node could not be looked up in the Ironic API within `lookup_timeout`.' },
  LOOKUP_TOKEN_MISSING: { status: 500, type: 'LookupAgentTokenError', meaning: 'Lookup returned no usable agent token (shorter than 32 characters, or masked with no token on hand).' },
  HEARTBEAT_FAILED: { status: 500, type: 'HeartbeatError', meaning: 'A heartbeat to the Ironic API failed (retried after 5–10 s).' },
  CONDUCTOR_PROTOCOL: { status: 500, type: 'IronicAPIError', meaning: 'The Ironic API answered something the agent cannot use (bad JSON, unexpected shape, no API URL reachable).' },
  TLS_SETUP_FAILED: { status: 500, type: 'TLSError', meaning: 'The agent could not create or load its TLS certificate.' },
  API_LISTEN_FAILED: { status: 500, type: 'CommandExecutionError', meaning: 'The agent API cannot listen on `listen_host`:`listen_port` (address in use, no such address).' },
  ADVERTISE_ADDRESS_NOT_FOUND: { status: 500, type: 'LookupAgentIPError', meaning: 'No address to advertise in the callback URL could be found.' },
  LOG_COLLECTION_FAILED: { status: 500, type: 'CommandExecutionError', meaning: 'The system log archive could not be built.' },
  OCI_REFERENCE_INVALID: { status: 400, type: 'InvalidImageRef', meaning: 'An image reference (`oci://host/name[:tag][@digest]`) or a digest in it does not follow the distribution-spec grammar, or uses a digest algorithm other than sha256/sha512.' },
  OCI_PULL_SECRET_INVALID: { status: 400, type: 'InvalidCommandParamsError', meaning: 'The registry pull secret has none of the accepted shapes (user:pass, base64 auth, double base64, token, docker config JSON).' },
  REGISTRY_CONFIG_INVALID: { status: 500, type: 'InvalidConfiguration', meaning: 'registries.conf, policy.json, an auth file or a certs.d directory could not be read or parsed.' },
  REGISTRY_MIRRORS_INVALID: { status: 400, type: 'InvalidConfiguration', meaning: 'A `registry_mirrors` option or a per-node `bootc_registry_mirrors` / `image_registry_mirrors` value is not a list of `REGISTRY=MIRROR[;FLAG…]` entries (or objects) as docs/oci-client.md describes; the message names the entry. At start the agent does not run.' },
  REGISTRY_BLOCKED: { status: 403, type: 'ImageDownloadError', meaning: 'registries.conf marks the registry (or the prefix naming the image) as `blocked`.' },
  REGISTRY_UNREACHABLE: { status: 502, type: 'ImageDownloadError', meaning: 'The registry could not be reached (DNS, connection, TLS or timeout), after retries.' },
  REGISTRY_UNAVAILABLE: { status: 503, type: 'ImageDownloadError', meaning: 'The registry kept answering 429 or 5xx (after honouring `Retry-After` and retrying).' },
  REGISTRY_AUTH_FAILED: { status: 401, type: 'ImageDownloadError', meaning: 'The registry or its token server refused our credentials, or access to the repository was denied (Docker Hub also answers this way for missing repositories).' },
  REGISTRY_NOT_FOUND: { status: 404, type: 'ImageDownloadError', meaning: 'The repository, tag, manifest or blob does not exist in the registry.' },
  REGISTRY_PROTOCOL: { status: 502, type: 'ImageDownloadError', meaning: 'The registry answered something the distribution spec does not allow (bad redirect, https→http downgrade, bad Content-Range, oversized body, unparsable token reply).' },
  OCI_MANIFEST_INVALID: { status: 500, type: 'ImageDownloadError', meaning: 'A manifest or index is malformed, ambiguous, too large, schema1, or its mediaType contradicts the Content-Type.' },
  OCI_DIGEST_MISMATCH: { status: 500, type: 'ImageChecksumError', meaning: 'Downloaded content does not match the size or digest its descriptor or reference promised.' },
  OCI_PLATFORM_NOT_FOUND: { status: 404, type: 'ImageDownloadError', meaning: 'No manifest in the image index matches the wanted platform, kind (bootc image or artifact) or disk type.' },
  OCI_POLICY_REJECTED: { status: 403, type: 'ImageDownloadError', meaning: 'policy.json rejects the image (`reject`) or contains a requirement type the agent does not know.' },
  OCI_SIGNATURE_REQUIRED: { status: 403, type: 'ImageDownloadError', meaning: 'policy.json requires a signature the agent does not verify (`signedBy` GPG, `signedBaseLayer`, keyless `sigstoreSigned` with `fulcio`/`pki`, or `rekorPublicKey*`), so it refuses before any request.' },
  OCI_SIGNATURE_MISSING: { status: 403, type: 'ImageDownloadError', meaning: 'policy.json requires a `sigstoreSigned` signature and none was found for the image\'s digest, neither in cosign\'s `sha256-<digest>.sig` tag nor among its OCI 1.1 referrers (details: requirement, keys, places searched).' },
  OCI_SIGNATURE_INVALID: { status: 403, type: 'ImageDownloadError', meaning: 'Signatures were found for the image but none verifies with a key of the `sigstoreSigned` requirement (wrong key, corrupted signature or payload, unusable bundle); details name the keys and each signature\'s failure.' },
  OCI_SIGNATURE_DIGEST_MISMATCH: { status: 403, type: 'ImageDownloadError', meaning: 'A signature made with a trusted key signs another manifest digest than the one the reference resolved to.' },
  OCI_SIGNATURE_IDENTITY_MISMATCH: { status: 403, type: 'ImageDownloadError', meaning: 'A signature made with a trusted key for this digest names an image (`docker-reference`) that the requirement\'s `signedIdentity` does not accept.' },
  OCI_POLICY_REQUIREMENT_UNKNOWN: { status: 403, type: 'ImageDownloadError', meaning: 'policy.json has a requirement type, or a `signedIdentity` type, that containers-policy.json(5) does not define; the image is refused.' },
  OCI_PUSH_FAILED: { status: 502, type: 'CommandExecutionError', meaning: 'The registry refused a blob upload or a manifest/index PUT (bad digest, manifest invalid, blob unknown, repository unknown, too large); the message quotes the registry\'s error text, never credentials.' },
  OCI_ARTIFACT_INVALID: { status: 400, type: 'ImageDownloadError', meaning: 'An OCI artifact cannot be written to or published from a directory: a file title with `/`, `\\`, `..`, a leading dot or control characters, two files with the same title, or a layer without a title.' },
  DEPLOY_ARGS_INVALID: { status: 400, type: 'InvalidCommandParamsError', meaning: 'A deploy step argument or `instance_info` key is malformed or ambiguous (for example `bootc_tpm2_luks: "maybe"`, a line that is not an SSH key, an image source that is not `oci://`).' },
  DISK_TOO_SMALL: { status: 500, type: 'DeploymentError', meaning: 'The chosen disk cannot hold the partitions bootc creates, the config drive and a root partition of useful size.' },
  IMAGE_NOT_BOOTABLE: { status: 400, type: 'ImageDownloadError', meaning: 'The image is an OCI artifact (artifactType or empty config), not a bootable container.' },
  IMAGE_PULL_FAILED: { status: 500, type: 'ImageDownloadError', meaning: '`podman pull` failed after retries (wrong credentials, registry down, missing tag); details carry its argv and stderr tail.' },
  INSUFFICIENT_MEMORY: { status: 500, type: 'DeploymentError', meaning: 'The image (compressed and estimated unpacked size) does not fit in the ramdisk\'s available memory; details name the numbers.' },
  INSUFFICIENT_SPACE: { status: 500, type: 'DeploymentError', meaning: 'The container storage does not have room for the image; details name the numbers.' },
  SCRATCH_FAILED: { status: 500, type: 'DeploymentError', meaning: 'Setting up or removing the container-storage scratch area in the target disk\'s tail (loop device at an offset, xfs, mount) failed; details name the steps done and the ones that failed.' },
  ROOT_GROW_FAILED: { status: 500, type: 'DeploymentError', meaning: 'After an install from disk-backed container storage, growing the root partition or its filesystem over the freed scratch space failed (the disk is wiped like after any failed deploy).' },
  CONTAINER_STORAGE_UNSUPPORTED: { status: 400, type: 'DeploymentError', meaning: 'Container storage on the target disk cannot be used for this image: it carries systemd-repart definitions, so bootc partitions with systemd-repart, which sizes root itself and discards the space after it (the scratch area). Deploy it with container storage in memory.' },
  BOOTC_NOT_FOUND: { status: 500, type: 'ImageDownloadError', meaning: 'The image has no `bootc` binary, so it cannot install itself.' },
  BOOTC_UNSUPPORTED: { status: 500, type: 'DeploymentError', meaning: 'The image\'s bootc is too old for `install to-disk` or for an option the deploy needs.' },
  BOOTC_INSTALL_FAILED: { status: 500, type: 'ImageWriteError', meaning: '`bootc install to-disk` failed; details carry the podman argv, exit code and stderr tail. The disk is wiped afterwards.' },
  PARTITION_VALIDATION_FAILED: { status: 500, type: 'DeploymentError', meaning: 'After install the partition table is missing, unreadable, or leaves no room for the config drive.' },
  DISK_WIPE_FAILED: { status: 500, type: 'BlockDeviceError', meaning: 'Wiping the disk after a failed deploy failed too; the disk state is unknown (details name the device).' },
  CONFIGDRIVE_INVALID: { status: 400, type: 'InstanceDeployFailure', meaning: 'The config drive is not base64, not valid gzip, or not an ISO 9660 image labelled `config-2` (nor a FAT image labelled `CONFIG-2`).' },
  CONFIGDRIVE_TOO_LARGE: { status: 400, type: 'InstanceDeployFailure', meaning: 'The config drive is larger than 64 MiB once decoded and decompressed (or than the existing `config-2` partition); details name both sizes.' },
  CONFIGDRIVE_DOWNLOAD_FAILED: { status: 502, type: 'InstanceDeployFailure', meaning: 'The config drive URL could not be fetched (connection, TLS, timeout, or an HTTP status ≥ 400, which details name).' },
  CONFIGDRIVE_NO_SPACE: { status: 500, type: 'InstanceDeployFailure', meaning: 'Less than 64 MiB is free at the end of the disk for a new config drive partition; details name the free space.' },
  CONFIGDRIVE_WRITE_FAILED: { status: 500, type: 'ConfigDriveWriteError', meaning: 'Writing the config drive to its partition, or reading it back to verify it, failed.' },
  PARTITION_TABLE_INVALID: { status: 500, type: 'InstanceDeployFailure', meaning: 'The disk has no GPT (MBR disks are refused; bootc always writes GPT), or more than one partition labelled `config-2`.' },
  IMAGE_DOWNLOAD_FAILED: { status: 502, type: 'ImageDownloadError', meaning: 'write_image/fetch: no image URL could be downloaded (connection, TLS, HTTP status ≥ 400, or the transfer broke off); details list each URL tried and why it failed.' },
  IMAGE_CHECKSUM_MISMATCH: { status: 500, type: 'ImageChecksumError', meaning: 'write_image/fetch: the downloaded bytes do not match `os_hash_value`/`checksum`; a disk already written to is wiped.' },
  IMAGE_CHECKSUM_UNSUPPORTED: { status: 400, type: 'InvalidCommandParamsError', meaning: 'write_image/fetch: the checksum algorithm is unknown to this ramdisk, or is MD5 while MD5 is not allowed, or no checksum was given for an http(s) URL.' },
  IMAGE_FORMAT_UNSUPPORTED: { status: 400, type: 'InvalidCommandParamsError', meaning: 'write_image/fetch: partition images, disk formats other than raw and qcow2, and xz compression are not supported.' },
  IMAGE_TOO_LARGE: { status: 500, type: 'ImageWriteError', meaning: 'write_image/fetch: the image (raw size or qcow2 virtual size) is larger than the target disk; details name both sizes.' },
  IMAGE_SCRATCH_NO_SPACE: { status: 500, type: 'ImageWriteError', meaning: 'write_image: a qcow2 image\'s temporary copy was to go on a scratch area in the target disk\'s tail (memory short, or `container_storage` disk), but the disk cannot hold the image\'s virtual size, a 16 MiB gap and the scratch, or the target is not a disk; details name the numbers; the disk is untouched.' },
  IMAGE_TEMP_NO_SPACE: { status: 500, type: 'ImageWriteError', meaning: 'write_image/fetch: a qcow2 image needs a temporary copy for `qemu-img convert` and it does not fit in the free space of the temporary directory; details name the directory and the numbers.' },
  IMAGE_WRITE_FAILED: { status: 500, type: 'ImageWriteError', meaning: 'write_image/fetch: writing to the target device or file, fsync, or `qemu-img convert` failed; a disk already written to is wiped.' },
  INTERNAL: { status: 500, type: 'CommandExecutionError', meaning: 'An unexpected internal error; the full error is in the agent log.' },
} as const satisfies Record<string, { status: number; type: string; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface AgentErrorOptions {
  cause?: unknown;
  /** Structured, secret-free facts about the failure: shown to the conductor in `details`. */
  details?: Record<string, unknown>;
}

export class AgentError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: AgentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
    Object.defineProperty(this, 'name', { value: 'AgentError', enumerable: false });
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get type(): string {
    return ERROR_CODES[this.code].type;
  }
}

/** A failed external program: keeps the argv, exit code and the tail of stderr. */
export class CommandFailedError extends AgentError {
  readonly argv: readonly string[];
  readonly exitCode: number | undefined;
  readonly stderrTail: string;

  constructor(
    code: 'COMMAND_FAILED' | 'COMMAND_NOT_FOUND' | 'COMMAND_TIMEOUT' | 'CANCELLED',
    argv: readonly string[],
    exitCode: number | undefined,
    stderrTail: string,
    options: AgentErrorOptions = {},
  ) {
    const what = code === 'COMMAND_NOT_FOUND' ? 'is not installed'
      : code === 'COMMAND_TIMEOUT' ? 'timed out'
      : code === 'CANCELLED' ? 'was cancelled'
      : `exited with code ${exitCode ?? 'unknown'}`;
    const tail = stderrTail ? `: ${stderrTail}` : '';
    super(code, `${argv[0] ?? 'command'} ${what}${tail}`, {
      ...options,
      details: { ...options.details, argv: [...argv], exit_code: exitCode ?? null, stderr_tail: stderrTail },
    });
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderrTail = stderrTail;
  }
}

// Anything can be thrown; the rest of the agent wants an AgentError with a code.
export function toAgentError(err: unknown): AgentError {
  if (isAgentError(err)) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new AgentError('CANCELLED', 'The operation was cancelled', { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new AgentError('INTERNAL', `Internal error: ${message}`, { cause: err });
}

// Duck-typed so errors from another copy of this module are still recognised.
export function isAgentError(err: unknown): err is AgentError {
  if (!(err instanceof Error)) return false;
  const code: unknown = (err as { code?: unknown }).code;
  return typeof code === 'string' && code in ERROR_CODES && 'details' in err;
}

/** One line a human can act on: message plus the most useful details. */
export function describeError(err: AgentError): string {
  const parts = [`[${err.code}] ${err.message}`];
  for (const [key, value] of Object.entries(err.details)) {
    if (key === 'stderr_tail') continue; // already in the message of CommandFailedError
    parts.push(`${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  }
  return parts.join('; ');
}
