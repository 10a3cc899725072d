// A node's identity on disk, written once by activation and read by every service at start. The owner key is the
// trust root; both documents are re-verified against it on every load, so a tampered file stops the node loudly.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { KeyObject } from 'node:crypto';
import { type KeyPair, loadKeyFile, publicKeyFromB64, writeFileAtomic } from './keys.ts';
import {
  type DeviceDoc, type OwnerDoc, type ZoneBootConfig, DocumentError, verifyOwnerDoc, verifyZoneBootConfig, verifyZoneDeviceDoc,
} from './documents.ts';

export const IDENTITY_FILES = {
  zone: 'zone.json',
  deviceKey: 'device_key.pem',
  verifyHubKey: 'verify_hub_key.pem',
  /** The zone enrolment key's private half: only on core devices (the first one, and core devices that joined). */
  enrolKey: 'enrol_key.pem',
  /** Core devices a joined device reaches the zone through until it has learnt the zone's addresses from
   * system-config (written at join; JSON array of enrolment peers). */
  peers: 'peers.json',
  /** The initial admin password hash, written by activation and imported by verify-hub at its first start. */
  ownerAdmin: 'owner_admin.json',
} as const;

const zoneFileSchema = z.object({
  owner_key: z.string(),
  zone_boot_jwt: z.string(),
  device_doc_jwt: z.string(),
  /** The owner's self-signed document, kept so the zone can publish it (absent in files from before it was kept). */
  owner_doc_jwt: z.string().optional(),
  activated_at: z.string(),
});
export type ZoneFile = z.infer<typeof zoneFileSchema>;

/**
 * `owner_admin.json`: the owner's initial password as an scrypt hash, never the password itself. `hash` is
 * scrypt(UTF-8 of the NFC-normalised password, salt, keylen = hash length, {N, r, p}); `salt` and `hash` are base64.
 */
export const ownerAdminFileSchema = z.object({
  user: z.string(),
  scrypt: z.object({
    N: z.number().int().min(2),
    r: z.number().int().min(1),
    p: z.number().int().min(1),
    salt: z.string().min(1),
    hash: z.string().min(1),
  }),
  created_at: z.string(),
});
export type OwnerAdminFile = z.infer<typeof ownerAdminFileSchema>;

export interface NodeIdentity {
  ownerKey: KeyObject;
  boot: ZoneBootConfig;
  bootJwt: string;
  device: DeviceDoc;
  deviceJwt: string;
  deviceKey: KeyPair;
  verifyHubKey: KeyObject;
  ownerDoc?: OwnerDoc;
  ownerDocJwt?: string;
}

export function isActivated(etcDir: string): boolean {
  return existsSync(join(etcDir, IDENTITY_FILES.zone));
}

export async function loadNodeIdentity(etcDir: string): Promise<NodeIdentity> {
  const zonePath = join(etcDir, IDENTITY_FILES.zone);
  if (!existsSync(zonePath)) throw new DocumentError(`this device is not activated (${zonePath} is missing)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(zonePath, 'utf8'));
  } catch (e) {
    throw new DocumentError(`${zonePath} is not valid JSON (${(e as Error).message})`);
  }
  const file = zoneFileSchema.safeParse(raw);
  if (!file.success) throw new DocumentError(`${zonePath} is malformed`);
  let ownerKey: KeyObject;
  try {
    ownerKey = publicKeyFromB64(file.data.owner_key);
  } catch {
    throw new DocumentError(`${zonePath}: owner_key is not an Ed25519 public key`);
  }
  const boot = await verifyZoneBootConfig(file.data.zone_boot_jwt, ownerKey);
  if (boot.owner_key !== file.data.owner_key) throw new DocumentError('zone boot config names a different owner key', 'mismatch');
  const device = await verifyZoneDeviceDoc(file.data.device_doc_jwt, boot);
  let ownerDoc: OwnerDoc | undefined;
  if (file.data.owner_doc_jwt !== undefined) {
    ownerDoc = await verifyOwnerDoc(file.data.owner_doc_jwt);
    if (ownerDoc.key !== file.data.owner_key || ownerDoc.name !== boot.owner || ownerDoc.zone !== boot.zone) {
      throw new DocumentError('owner document does not match the zone boot config', 'mismatch');
    }
  }
  const keyPath = join(etcDir, IDENTITY_FILES.deviceKey);
  let deviceKey: KeyPair;
  try {
    deviceKey = loadKeyFile(keyPath);
  } catch (e) {
    throw new DocumentError(`cannot read the device key ${keyPath}: ${(e as Error).message}`, 'mismatch');
  }
  if (deviceKey.publicKeyB64 !== device.key) throw new DocumentError('device key file does not match the device document', 'mismatch');
  return {
    ownerKey,
    boot,
    bootJwt: file.data.zone_boot_jwt,
    device,
    deviceJwt: file.data.device_doc_jwt,
    deviceKey,
    verifyHubKey: publicKeyFromB64(boot.verify_hub_key),
    ownerDoc,
    ownerDocJwt: file.data.owner_doc_jwt,
  };
}

/** Written last during activation: its presence is what "activated" means, so a crash before it leaves none. */
export function writeZoneFile(etcDir: string, zone: ZoneFile): void {
  writeFileAtomic(join(etcDir, IDENTITY_FILES.zone), JSON.stringify(zone, null, 2) + '\n', 0o600);
}
