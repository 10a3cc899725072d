// Access tokens every service accepts. verify-hub signs user tokens with the zone's verify-hub key (named in the
// owner-signed zone boot config); node_daemon signs service tokens for the kernel services it starts with its
// device key (named in an owner-signed device document). Nothing else is trusted.
import { z } from 'zod';
import type { KeyObject } from 'node:crypto';
import { KrpcError, type Principal } from '../krpc/index.ts';
import { JwtError, peekJwt, signJwt, verifyJwt } from './jwt.ts';

export const SESSION_TOKEN_TTL_SEC = 15 * 60;
export const SUDO_TOKEN_TTL_SEC = 5 * 60;
export const REFRESH_TOKEN_TTL_SEC = 7 * 24 * 3600;
export const SERVICE_TOKEN_TTL_SEC = 24 * 3600;

export const KERNEL_SERVICES = ['system-config', 'verify-hub', 'scheduler', 'klog', 'node-daemon', 'gateway', 'activation', 'ns', 'dfs'] as const;

const accessClaims = z.object({
  typ: z.enum(['session', 'sudo', 'service']),
  sub: z.string().min(1).max(64),
  app: z.string().min(1).max(64),
  sid: z.string().max(64).optional(),
  jti: z.string().max(64),
  exp: z.number().int(),
  iat: z.number().int(),
});
export type AccessClaims = z.infer<typeof accessClaims>;

export const VERIFY_HUB_KID = 'verify-hub';

export function signAccessToken(claims: Omit<AccessClaims, 'iat' | 'exp'>, key: KeyObject, ttlSec: number, kid: string): Promise<string> {
  return signJwt(claims, key, { kid, expiresInSec: ttlSec });
}

/** A device of this zone as its verified document describes it. */
export interface TrustedDevice {
  key: KeyObject;
  name: string;
  role: string;
}

export interface TrustAnchors {
  verifyHubKey: KeyObject;
  /** did:dev → the device, for devices of this zone whose signed documents this node has verified. */
  device(did: string): TrustedDevice | undefined | Promise<TrustedDevice | undefined>;
}

export type TokenVerifier = ((token: string) => Promise<Principal>) & {
  /** Forgets every verified token a device signed: it was removed from the zone, so they stop working at once. */
  forgetDevice(did: string): void;
};

/** Verified tokens remembered, so a client's repeated calls cost one signature check per token, not per call. */
const VERIFIED_CACHE_SIZE = 1024;

/** Builds the authenticate function kRPC servers use. */
export function createTokenVerifier(anchors: () => TrustAnchors): TokenVerifier {
  // Keyed by the exact token text, so only a token that already verified can hit. Expiry is re-checked on every hit;
  // a removed device's tokens are dropped by forgetDevice, so a cached answer stays as true as the anchors are.
  const verified = new Map<string, { principal: Principal; kid: string | undefined }>();
  const verify = async (token: string): Promise<Principal> => {
    const hit = verified.get(token);
    if (hit) {
      if (hit.principal.expiresAt <= Date.now() / 1000) {
        verified.delete(token);
        throw new KrpcError('TOKEN_EXPIRED', 'token has expired; refresh or log in again');
      }
      if (hit.kid === VERIFY_HUB_KID) return hit.principal;
      // A device removed while its token was being verified would otherwise stay cached: it is looked up again (a map
      // lookup for a known device) on every hit, and its name and role are taken as they stand now.
      const device = await anchors().device(hit.kid ?? '');
      if (!device) {
        verified.delete(token);
        throw new KrpcError('UNAUTHENTICATED', 'token is signed by a key this zone does not trust');
      }
      return withDevice(hit.principal, device);
    }
    const result = await verifyUncached(token);
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    verified.set(token, result);
    return result.principal;
  };
  return Object.assign(verify, {
    forgetDevice(did: string) {
      for (const [token, v] of verified) if (v.kid === did) verified.delete(token);
    },
  });

  async function verifyUncached(token: string): Promise<{ principal: Principal; kid: string | undefined }> {
    let kid: string | undefined;
    try {
      kid = peekJwt(token).kid;
    } catch {
      throw new KrpcError('UNAUTHENTICATED', 'token is malformed');
    }
    const a = anchors();
    const device = kid !== VERIFY_HUB_KID && kid?.startsWith('did:dev:') ? await a.device(kid) : undefined;
    const key = kid === VERIFY_HUB_KID ? a.verifyHubKey : device?.key;
    if (!key) throw new KrpcError('UNAUTHENTICATED', 'token is signed by a key this zone does not trust');
    let payload: Record<string, unknown>;
    try {
      payload = await verifyJwt(token, key);
    } catch (e) {
      if (e instanceof JwtError && e.reason === 'expired') throw new KrpcError('TOKEN_EXPIRED', 'token has expired; refresh or log in again');
      throw new KrpcError('UNAUTHENTICATED', 'token signature is invalid');
    }
    const c = accessClaims.safeParse(payload);
    if (!c.success) throw new KrpcError('UNAUTHENTICATED', 'token claims are malformed');
    // A device key may only vouch for kernel services running on that device, never for a user.
    if (kid !== VERIFY_HUB_KID && c.data.typ !== 'service') throw new KrpcError('UNAUTHENTICATED', 'device keys sign only service tokens');
    if (c.data.typ === 'service' && !(KERNEL_SERVICES as readonly string[]).includes(c.data.sub)) {
      throw new KrpcError('UNAUTHENTICATED', 'service token names an unknown kernel service');
    }
    const principal: Principal = { userId: c.data.sub, appId: c.data.app, kind: c.data.typ, sessionId: c.data.sid, expiresAt: c.data.exp };
    if (!device) return { principal, kid };
    principal.device = kid;
    return { principal: withDevice(principal, device), kid };
  }
}

/** The principal of a device-signed token, naming the device as its document does now. */
function withDevice(p: Principal, device: TrustedDevice): Principal {
  return { ...p, deviceName: device.name, deviceRole: device.role };
}
