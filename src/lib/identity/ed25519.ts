// Ed25519 signing for the owner's side of activation, through @noble/curves (audited, pure JavaScript). The owner
// signs in the browser, and a browser offers Ed25519 through WebCrypto only in a secure context (HTTPS or localhost),
// while an unactivated device is opened over plain HTTP on the LAN. The CLI signs with the same code, so there is one
// path; ed25519.test.ts checks it byte for byte against Node's (OpenSSL's), Ed25519 signatures being deterministic.
// Devices keep using node:crypto for their own keys and for every verification.
import { ed25519 } from '@noble/curves/ed25519.js';
import { base64url } from './base64url.ts';

/** The 32-byte public key of a 32-byte secret. */
export function ed25519PublicKey(secret: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(secret);
}

/** RFC 8032 §5.1.6: the 64-byte signature of `message`. */
export function ed25519Sign(secret: Uint8Array, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, secret);
}

/** An EdDSA JWT (RFC 8037) of `payload`, signed with the 32-byte secret. */
export function signEdDsaJwt(payload: Record<string, unknown>, secret: Uint8Array): string {
  const enc = new TextEncoder();
  const input = `${base64url(enc.encode(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' })))}.${base64url(enc.encode(JSON.stringify(payload)))}`;
  return `${input}.${base64url(ed25519Sign(secret, enc.encode(input)))}`;
}
