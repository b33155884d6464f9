/**
 * Kernel command-line parsing: whitespace-separated words, `key=value` or bare flags,
 * double quotes may wrap values with spaces (`sshkey="ssh-ed25519 AAAA… user"`).
 * @module
 */

export function parseKernelCmdline(text: string): Map<string, string> {
  const params = new Map<string, string>();
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length) break;
    let word = '';
    let quoted = false;
    while (i < text.length && (quoted || !/\s/.test(text[i]!))) {
      const ch = text[i]!;
      if (ch === '"') quoted = !quoted;
      else word += ch;
      i++;
    }
    const eq = word.indexOf('=');
    // Later words win, as the kernel and IPA treat repeated parameters.
    if (eq > 0) params.set(word.slice(0, eq), word.slice(eq + 1));
    else if (word) params.set(word, '');
  }
  return params;
}
