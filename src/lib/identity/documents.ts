// The zone's signed documents (DESIGN §5). Each is an EdDSA JWT whose payload is validated by a zod schema after the
// signature and expiry check, so a document that reaches code is always authentic, current and well-formed.
import { z } from 'zod';
import type { KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { signJwt, verifyJwt, JwtError } from './jwt.ts';
import { publicKeyFromB64 } from './keys.ts';
import {
  type DeviceDoc, type OwnerDoc, type ZoneBootConfig, deviceDocSchema, ownerDocSchema, zoneBootConfigSchema,
} from './doc-schemas.ts';
import { DEVICE_ROLES, b64Key, deviceName, enrolPeerSchema, zoneHost } from './names.ts';

export {
  DOCUMENT_LIFETIME_SEC, type DeviceDoc, GATEWAY_MODES, type GatewayMode, type OwnerDoc, type ZoneBootConfig, deviceDocSchema,
  gatewaySchema, ownerDocSchema, zoneBootConfigSchema,
} from './doc-schemas.ts';
export { DEVICE_NAME, DEVICE_ROLES, type DeviceRole, USER_NAME, deviceName, enrolPeerSchema, type EnrolPeer, userName, zoneHost } from './names.ts';

/**
 * Why a document was refused: `expired`; `invalid` (not a JWT, or not signed by the expected key); `malformed`
 * (authentic, but its content breaks the schema); `mismatch` (documents that disagree with each other or with files).
 */
export type DocumentProblem = 'expired' | 'invalid' | 'malformed' | 'mismatch';

export class DocumentError extends Error {
  constructor(
    message: string,
    readonly reason: DocumentProblem = 'malformed',
  ) {
    super(message);
    this.name = 'DocumentError';
  }
}

type Schema<T> = z.ZodType<T>;

async function verifyDoc<T>(what: string, schema: Schema<T>, jwt: string, key: KeyObject): Promise<T> {
  let payload: Record<string, unknown>;
  try {
    payload = await verifyJwt(jwt, key, { clockToleranceSec: 300 });
  } catch (e) {
    if (e instanceof JwtError && e.reason === 'expired') throw new DocumentError(`${what} has expired`, 'expired');
    throw new DocumentError(`${what} has an invalid signature or format`, 'invalid');
  }
  const parsed = schema.safeParse(payload);
  if (!parsed.success) {
    throw new DocumentError(`${what} is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

export function verifyZoneBootConfig(jwt: string, ownerKey: KeyObject): Promise<ZoneBootConfig> {
  return verifyDoc('zone boot config', zoneBootConfigSchema, jwt, ownerKey);
}

export function verifyDeviceDoc(jwt: string, ownerKey: KeyObject): Promise<DeviceDoc> {
  return verifyDoc('device document', deviceDocSchema, jwt, ownerKey);
}

/** A device document of this zone: signed by the owner (the first device) or by the enrolment key the owner named in
 * the boot config (devices added later), and naming this zone. */
export async function verifyZoneDeviceDoc(jwt: string, boot: ZoneBootConfig): Promise<DeviceDoc> {
  let doc: DeviceDoc;
  try {
    doc = await verifyDeviceDoc(jwt, publicKeyFromB64(boot.owner_key));
  } catch (e) {
    if (!(e instanceof DocumentError && e.reason === 'invalid')) throw e;
    doc = await verifyDeviceDoc(jwt, publicKeyFromB64(boot.enrol_key));
  }
  if (doc.zone !== boot.zone) throw new DocumentError(`device document of "${doc.name}" belongs to zone "${doc.zone}", not "${boot.zone}"`, 'mismatch');
  return doc;
}

/**
 * A one-time offer to join the zone, signed by the enrolment key. Whoever holds it can enrol one device with the role
 * it names before it expires, so it travels like a password: shown once to an admin, carried to the new device by
 * hand (copied or scanned), and stored by the zone only as a hash of its secret.
 */
export const enrolOfferSchema = z.object({
  typ: z.literal('enrol-offer'),
  zone: zoneHost,
  owner_key: b64Key,
  /** The key that signed the offer, so a device can check the offer before spending it; the zone's boot config must
   * name the same key when the device receives it. */
  enrol_key: b64Key,
  id: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  /** 32 random bytes, base64url: proves at enrolment that the device was given this offer. */
  secret: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  role: z.enum(DEVICE_ROLES),
  /** A device name the admin chose; when absent the device proposes one. */
  name: deviceName.optional(),
  peers: z.array(enrolPeerSchema).min(1).max(7),
  iat: z.number().int(),
  exp: z.number().int(),
});
export type EnrolOffer = z.infer<typeof enrolOfferSchema>;

/** The text form of an offer (what `device add` prints, and what a QR code carries after `buckyos://join?offer=`). */
export const OFFER_PREFIX = 'bkjoin1.';

export function verifyEnrolOffer(jwt: string, enrolKey: KeyObject): Promise<EnrolOffer> {
  return verifyDoc('enrolment offer', enrolOfferSchema, jwt, enrolKey);
}

/**
 * Opens the offer a user gave a device: the code, the bare JWT, or the `buckyos://join?offer=` URI. The signature is
 * checked against the enrolment key the offer names (the device has no zone keys yet), so a code altered on its way
 * is refused before its secret is spent; the zone's owner-signed boot config must then name that same key.
 */
export async function openEnrolOffer(text: string): Promise<{ jwt: string; offer: EnrolOffer }> {
  let jwt = text.trim();
  const uri = /^buckyos:\/\/join\?offer=(.+)$/.exec(jwt);
  if (uri) {
    try {
      jwt = decodeURIComponent(uri[1]!);
    } catch {
      throw new DocumentError('enrolment offer URI is garbled', 'invalid');
    }
  }
  if (jwt.startsWith(OFFER_PREFIX)) jwt = jwt.slice(OFFER_PREFIX.length);
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));
  } catch {
    throw new DocumentError('enrolment offer is not a join code: paste it exactly as `buckyos device add` printed it', 'invalid');
  }
  const key = enrolOfferSchema.shape.enrol_key.safeParse((claims as { enrol_key?: unknown } | null)?.enrol_key);
  if (!key.success) throw new DocumentError('enrolment offer names no valid enrolment key', 'invalid');
  const offer = await verifyEnrolOffer(jwt, publicKeyFromB64(key.data));
  return { jwt, offer };
}

/**
 * A zone's public names, as the zone publishes them in DNS beside its boot config (TXT `_buckyos.<zone>`, see
 * docs/ns-zone-names.md): signed by the enrolment key the owner delegated in the boot config, so a resolver that
 * trusts the owner key can check every address without the owner's key being online. Short-lived on purpose: a
 * stale copy replayed by a hostile resolver stops verifying when it expires.
 */
const ipv4Text = z.string().refine((v) => isIPv4(v), 'an IPv4 address');
const ipv6Text = z.string().refine((v) => isIPv6(v), 'an IPv6 address');
/** "@" is the zone's own name, "*" every name below it without records of its own, else one label below the zone. */
export const ZONE_NAME_LABEL = /^(@|\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$/;
export const zoneNamesSchema = z.object({
  typ: z.literal('zone-names'),
  zone: zoneHost,
  names: z
    .record(
      z.string().regex(ZONE_NAME_LABEL, 'a label: "@", "*", or one DNS label'),
      z.object({ a: z.array(ipv4Text).max(16).optional(), aaaa: z.array(ipv6Text).max(16).optional() }).strict(),
    )
    .refine((n) => Object.keys(n).length <= 256, 'at most 256 names'),
  /** Seconds a resolver may keep an answer made from this document. */
  ttl: z.number().int().min(1).max(86400),
  iat: z.number().int(),
  exp: z.number().int(),
});
export type ZoneNames = z.infer<typeof zoneNamesSchema>;

export function verifyZoneNames(jwt: string, enrolKey: KeyObject): Promise<ZoneNames> {
  return verifyDoc('zone names document', zoneNamesSchema, jwt, enrolKey);
}

/** An owner document is self-signed: it proves possession of the key it names. */
export async function verifyOwnerDoc(jwt: string): Promise<OwnerDoc> {
  const parts = jwt.split('.');
  let claimed: unknown;
  try {
    claimed = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'));
  } catch {
    throw new DocumentError('owner document is not a JWT', 'invalid');
  }
  const key = ownerDocSchema.shape.key.safeParse((claimed as { key?: unknown })?.key);
  if (!key.success) throw new DocumentError('owner document names no valid key', 'invalid');
  let ownerKey: KeyObject;
  try {
    ownerKey = publicKeyFromB64(key.data);
  } catch {
    throw new DocumentError('owner document names no valid key', 'invalid');
  }
  return verifyDoc('owner document', ownerDocSchema, jwt, ownerKey);
}

export function signDocument(payload: ZoneBootConfig | DeviceDoc | OwnerDoc | EnrolOffer | ZoneNames, ownerKey: KeyObject): Promise<string> {
  return signJwt(payload, ownerKey);
}
