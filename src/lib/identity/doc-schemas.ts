// The shapes of the owner-signed documents activation produces: the zone boot config, the device document and the
// owner document. Free of Node built-ins, because the browser's activation page signs them too (activation-docs.ts);
// documents.ts adds verification on Node and the zone's other documents.
import { z } from 'zod';
import { DEVICE_ROLES, b64Key, deviceName, userName, zoneHost } from './names.ts';

/** How the zone is reached (DESIGN §8): on the LAN only, through a public host of its own, or through a relay (SN). */
export const GATEWAY_MODES = ['lan', 'public', 'sn'] as const;
export type GatewayMode = (typeof GATEWAY_MODES)[number];

export const gatewaySchema = z.object({
  mode: z.enum(GATEWAY_MODES),
  /** Public host or relay the zone is reached through, when not LAN-only. */
  host: z.string().max(253).optional(),
});

export const zoneBootConfigSchema = z.object({
  typ: z.literal('zone-boot'),
  zone: zoneHost,
  owner: userName,
  owner_key: b64Key,
  /** Key that signs session tokens; tokens signed by anything else are refused by every service. */
  verify_hub_key: b64Key,
  /** The zone enrolment key: the owner delegates to it the signing of device documents (and enrolment offers), so
   * an admin can add a device without the recovery phrase. Core devices hold its private half. */
  enrol_key: b64Key,
  core_nodes: z.array(deviceName).min(1).max(7),
  gateway: gatewaySchema,
  iat: z.number().int(),
  exp: z.number().int(),
});
export type ZoneBootConfig = z.infer<typeof zoneBootConfigSchema>;

export const deviceDocSchema = z
  .object({
    typ: z.literal('device'),
    name: deviceName,
    zone: zoneHost,
    /** did:dev:<public key>. */
    did: z.string().regex(/^did:dev:[A-Za-z0-9_-]{43}$/),
    key: b64Key,
    role: z.enum(DEVICE_ROLES),
    iat: z.number().int(),
    exp: z.number().int(),
  })
  // Tokens are matched to keys by DID, so a document whose DID names another key would let that key's holder pass
  // as this device.
  .refine((d) => d.did === `did:dev:${d.key}`, { message: 'did must be did:dev:<key>', path: ['did'] });
export type DeviceDoc = z.infer<typeof deviceDocSchema>;

export const ownerDocSchema = z.object({
  typ: z.literal('owner'),
  name: userName,
  zone: zoneHost,
  key: b64Key,
  iat: z.number().int(),
  exp: z.number().int(),
});
export type OwnerDoc = z.infer<typeof ownerDocSchema>;

/** Ten years: documents are re-signed by the owner on change; expiry bounds the damage of a leaked old copy. */
export const DOCUMENT_LIFETIME_SEC = 10 * 365 * 24 * 3600;
