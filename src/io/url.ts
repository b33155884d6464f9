/**
 * URLs as they may be shown in logs, results and error messages. Temp URLs (Swift, S3) carry
 * their signature in the query, and a URL may carry a user and password: neither is ever shown.
 * @module
 */

/** `scheme://host[:port]/path`, with `?…` where the query was; credentials and fragment dropped. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}${parsed.search ? '?…' : ''}`;
  } catch {
    return '<unparsable URL>';
  }
}

// Shorter values (`?v=1`, `?raw=true`) are not secrets, and blanking them would blank common words.
const MIN_SECRET_LENGTH = 6;

/**
 * What redactUrl hides that is worth hiding (query values, user, password), decoded and raw,
 * so text a server sent back (an error page echoing the request) can be scrubbed of it.
 */
export function urlSecrets(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [];
  }
  const found = new Set<string>();
  const add = (value: string) => {
    if (value.length >= MIN_SECRET_LENGTH) found.add(value);
  };
  for (const value of parsed.searchParams.values()) add(value);
  for (const raw of parsed.search.slice(1).split('&')) add(raw.slice(raw.indexOf('=') + 1));
  for (const part of [parsed.username, parsed.password]) {
    add(part);
    add(decodeURIComponentSafe(part));
  }
  // Longest first, so a value is never partly scrubbed by a shorter one inside it.
  return [...found].sort((a, b) => b.length - a.length);
}

/** `text` with each of `secrets` (from urlSecrets) replaced by `…`. */
export function hideSecrets(text: string, secrets: readonly string[]): string {
  return secrets.reduce((out, secret) => out.split(secret).join('…'), text);
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
