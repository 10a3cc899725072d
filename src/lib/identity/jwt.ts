// EdDSA JWTs (RFC 8037) for both long-lived documents and short-lived tokens. Verification always checks the
// signature, the algorithm (only EdDSA: no "none", no HMAC confusion) and expiry.
import { SignJWT, jwtVerify, decodeProtectedHeader, decodeJwt, errors, type JWTPayload } from 'jose';
import type { KeyObject } from 'node:crypto';

export class JwtError extends Error {
  constructor(
    readonly reason: 'expired' | 'invalid',
    message: string,
  ) {
    super(message);
    this.name = 'JwtError';
  }
}

export interface SignOptions {
  /** Key id placed in the header so verifiers can pick the key (a DID or a key name). */
  kid?: string;
  /** Seconds from now; omit for documents that carry their own `exp` or none. */
  expiresInSec?: number;
}

export async function signJwt(payload: Record<string, unknown>, key: KeyObject, opts: SignOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(payload as JWTPayload).setProtectedHeader(
    opts.kid ? { alg: 'EdDSA', typ: 'JWT', kid: opts.kid } : { alg: 'EdDSA', typ: 'JWT' },
  );
  if (payload.iat === undefined) jwt.setIssuedAt(now);
  if (opts.expiresInSec !== undefined) jwt.setExpirationTime(now + opts.expiresInSec);
  return jwt.sign(key);
}

/** Verifies signature and expiry; returns the payload. */
export async function verifyJwt(token: string, key: KeyObject, opts: { clockToleranceSec?: number } = {}): Promise<Record<string, unknown>> {
  try {
    const { payload } = await jwtVerify(token, key, { algorithms: ['EdDSA'], clockTolerance: opts.clockToleranceSec ?? 5 });
    return payload as Record<string, unknown>;
  } catch (e) {
    if (e instanceof errors.JWTExpired) throw new JwtError('expired', 'token has expired');
    if (e instanceof errors.JOSEError) throw new JwtError('invalid', `invalid token: ${e.code}`);
    throw new JwtError('invalid', 'invalid token');
  }
}

/** Reads header and payload WITHOUT verifying, only to choose which key verifies it. Never trust the result. */
export function peekJwt(token: string): { kid?: string; payload: Record<string, unknown> } {
  try {
    const header = decodeProtectedHeader(token);
    return { kid: typeof header.kid === 'string' ? header.kid : undefined, payload: decodeJwt(token) as Record<string, unknown> };
  } catch {
    throw new JwtError('invalid', 'malformed token');
  }
}
