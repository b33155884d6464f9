/**
 * A fresh ed25519 public key in authorized_keys format (for `bootc_authorized_keys`).
 * @module
 */
import { generateKeyPairSync } from 'node:crypto';

export function newAuthorizedKey(comment: string): string {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  // The OpenSSH wire format: length-prefixed key type, then the 32-byte key.
  const field = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from('ssh-ed25519')), field(raw)]).toString('base64')} ${comment}`;
}
