// The owner's side of activation, free of Node built-ins so that the CLI (activation-client.ts) and the browser's
// activation page (src/ui/activation) sign with one implementation: the owner key signs the zone boot config, the
// device document and the owner document (ed25519.ts) and never leaves the owner's side; the device receives only
// signatures and the public key (docs/identity.md §7).
import { z } from 'zod';
import { adminPasswordProblem, type activationApi } from '../api/activation.ts';
import type { Client } from '../krpc/call.ts';
import { KrpcError } from '../krpc/errors.ts';
import {
  DOCUMENT_LIFETIME_SEC, type DeviceDoc, type OwnerDoc, type ZoneBootConfig, deviceDocSchema, gatewaySchema, ownerDocSchema,
  zoneBootConfigSchema,
} from './doc-schemas.ts';
import { base64url } from './base64url.ts';
import { ed25519PublicKey, signEdDsaJwt } from './ed25519.ts';
import { deviceName as deviceNameSchema, userName, zoneHost } from './names.ts';

export type GatewayConfig = z.infer<typeof gatewaySchema>;

/** The owner key: its 32-byte secret (RFC 8032) and public key. Held only on the owner's side. */
export interface OwnerSigningKey {
  secret: Uint8Array;
  /** base64url of the 32-byte public key. */
  publicKeyB64: string;
}

export function ownerSigningKey(secret: Uint8Array): OwnerSigningKey {
  return { secret, publicKeyB64: base64url(ed25519PublicKey(secret)) };
}

/** The signed part of a commit request; field names are the wire names so it can be sent as is. */
export interface ActivationDocs {
  owner_key: string;
  zone_boot_jwt: string;
  device_doc_jwt: string;
  owner_doc_jwt: string;
}

export interface SignActivationInput {
  owner: OwnerSigningKey;
  zone: string;
  /** The owner's user name. */
  ownerName: string;
  deviceName: string;
  /** Public keys (base64url) the device offered in `prepare`. */
  deviceKey: string;
  verifyHubKey: string;
  enrolKey: string;
  gateway: GatewayConfig;
  /** Unix seconds the documents are issued at; now by default. */
  iat?: number;
}

function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const why = r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
    throw new KrpcError('INVALID_PARAMS', `${what}: ${why}`);
  }
  return r.data;
}

function sign(payload: ZoneBootConfig | DeviceDoc | OwnerDoc, owner: OwnerSigningKey): string {
  return signEdDsaJwt(payload as unknown as Record<string, unknown>, owner.secret);
}

/** Builds, checks against their schemas, and signs the zone boot config, the device document and the owner document. */
export function signActivationDocs(input: SignActivationInput): ActivationDocs {
  const iat = input.iat ?? Math.floor(Date.now() / 1000);
  const exp = iat + DOCUMENT_LIFETIME_SEC;
  const ownerKey = input.owner.publicKeyB64;
  const boot = checked(zoneBootConfigSchema, {
    typ: 'zone-boot',
    zone: input.zone,
    owner: input.ownerName,
    owner_key: ownerKey,
    verify_hub_key: input.verifyHubKey,
    enrol_key: input.enrolKey,
    core_nodes: [input.deviceName],
    gateway: input.gateway,
    iat,
    exp,
  }, 'zone boot config');
  const device = checked(deviceDocSchema, {
    typ: 'device',
    name: input.deviceName,
    zone: input.zone,
    did: `did:dev:${input.deviceKey}`,
    key: input.deviceKey,
    role: 'core',
    iat,
    exp,
  }, 'device document');
  const ownerDoc = checked(ownerDocSchema, { typ: 'owner', name: input.ownerName, zone: input.zone, key: ownerKey, iat, exp }, 'owner document');
  return {
    owner_key: ownerKey,
    zone_boot_jwt: sign(boot, input.owner),
    device_doc_jwt: sign(device, input.owner),
    owner_doc_jwt: sign(ownerDoc, input.owner),
  };
}

/** The fields of an activation a person types, checked before the device is contacted so a typo costs no attempt. */
export interface ActivationFields {
  zone: string;
  owner: string;
  /** The owner's initial admin password; it reaches the device only to be hashed there. */
  password: string;
  /** Defaults to the name the device suggests from its host name. */
  deviceName?: string;
  gateway?: GatewayConfig;
}

export type ActivationField = 'zone' | 'owner' | 'deviceName' | 'gateway' | 'password';

/** Every problem with the typed fields, by field, as sentences (the device would refuse each with the same rule). */
export function activationFieldProblems(f: ActivationFields): Partial<Record<ActivationField, string>> {
  const out: Partial<Record<ActivationField, string>> = {};
  const first = (schema: z.ZodTypeAny, v: unknown) => {
    const r = schema.safeParse(v);
    return r.success ? undefined : r.error.issues[0]!.message;
  };
  const zone = first(zoneHost, f.zone);
  if (zone) out.zone = zone;
  const owner = first(userName, f.owner);
  if (owner) out.owner = owner;
  if (f.deviceName !== undefined) {
    const d = first(deviceNameSchema, f.deviceName);
    if (d) out.deviceName = d;
  }
  const gw = f.gateway ?? { mode: 'lan' };
  const g = first(gatewaySchema, gw);
  if (g) out.gateway = `gateway: ${g}`;
  const pw = adminPasswordProblem(f.password, { user: f.owner, zone: f.zone });
  if (pw) out.password = pw;
  return out;
}

export interface ActivationResult {
  zone: string;
  zone_did: string;
  device_name: string;
  device_did: string;
  owner: string;
  owner_key: string;
}

export type ActivationStep = 'checking' | 'preparing' | 'signing' | 'committing';

/**
 * prepare → sign → commit through any activation client (Node's or the browser's). Everything that can be checked
 * here is checked before the device is contacted; the device checks it all again.
 */
export async function activateWithKey(
  client: Client<(typeof activationApi)['methods']>,
  owner: OwnerSigningKey,
  fields: ActivationFields,
  onStep?: (step: ActivationStep) => void,
): Promise<ActivationResult> {
  onStep?.('checking');
  const problems = Object.values(activationFieldProblems(fields));
  if (problems.length > 0) throw new KrpcError('INVALID_PARAMS', problems.join('; '));
  const gateway = fields.gateway ?? { mode: 'lan' as const };
  onStep?.('preparing');
  const prepared = await client.prepare(fields.deviceName === undefined ? {} : { device_name: fields.deviceName });
  onStep?.('signing');
  // The keys the device offers are checked as Ed25519 keys by the document schemas before the owner signs them.
  const docs = signActivationDocs({
    owner,
    zone: fields.zone,
    ownerName: fields.owner,
    deviceName: prepared.device_name,
    deviceKey: prepared.device_key,
    verifyHubKey: prepared.verify_hub_key,
    enrolKey: prepared.enrol_key,
    gateway,
  });
  onStep?.('committing');
  const done = await client.commit({ attempt_id: prepared.attempt_id, ...docs, admin_password: fields.password });
  return { ...done, owner_key: docs.owner_key };
}
