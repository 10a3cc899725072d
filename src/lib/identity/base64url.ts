// Unpadded base64url (RFC 4648 §5), the encoding of keys in DIDs and of JWT parts, free of Node (Buffer) for the code
// that runs in browsers: the activation page signs with it, and the system UI reads its tokens' claims with it.

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function base64url(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let c = 0; c < chars; c++) out += B64URL[(n >> (18 - 6 * c)) & 63];
  }
  return out;
}

/** The bytes of base64url text (padded or not); throws on characters outside the alphabet. */
export function fromBase64url(text: string): Uint8Array {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '='));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** A JWT's payload as JSON, unverified: for a client reading what a token it was given says (its lifetime, its
 * session), never for trusting it. Throws when the token is not a JWT with a JSON payload. */
export function jwtPayload(jwt: string): unknown {
  const part = jwt.split('.')[1];
  if (!part) throw new Error('not a JWT');
  return JSON.parse(new TextDecoder().decode(fromBase64url(part)));
}
