// The names and key strings the zone's documents and kRPC declarations share: users, devices, zone hosts, device
// roles, public keys. Free of Node built-ins, because the declarations also run in the browser (the system UI).
import { z } from 'zod';

/** A zone host name as a DNS name: 1-63 character labels of letters, digits and inner dashes, at least two labels. */
export const ZONE_HOST = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const DEVICE_NAME = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;
export const USER_NAME = /^[a-z][a-z0-9_-]{1,31}$/;
export const deviceName = z.string().regex(DEVICE_NAME, 'device name: 2-32 lowercase letters, digits or dashes, starting with a letter');
export const userName = z.string().regex(USER_NAME, 'user name: 2-32 lowercase letters, digits, _ or -, starting with a letter');
export const zoneHost = z.string().regex(ZONE_HOST, 'zone name: a DNS host name such as alice.example.com');

export const DEVICE_ROLES = ['core', 'storage', 'portable', 'gateway'] as const;
export type DeviceRole = (typeof DEVICE_ROLES)[number];

// Canonical encodings only: 43 characters carry 258 bits, so the last one has two stray low bits, and two spellings
// of one key must not both pass. Every 32-byte string is an Ed25519 public key as far as Node (OpenSSL) is concerned,
// so the canonical form is the whole check.
export const b64Key = z
  .string()
  .regex(/^[A-Za-z0-9_-]{43}$/, 'an Ed25519 public key in base64url (43 characters)')
  .refine((k) => /[AEIMQUYcgkosw048]$/.test(k), 'not a canonical base64url Ed25519 public key');

/** Where a joining device reaches the zone: a core device by name, the key it must present, and its tunnel address. */
export const enrolPeerSchema = z.object({
  name: deviceName,
  key: b64Key,
  /** host:port of its tunnel listener; an IPv6 host in brackets. */
  address: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, 'host:port'),
});
export type EnrolPeer = z.infer<typeof enrolPeerSchema>;
