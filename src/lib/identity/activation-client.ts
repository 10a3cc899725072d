// The owner's side of activation (docs/identity.md): the owner key is derived from the recovery phrase here, on the
// owner's machine, signs the zone's documents, and never leaves; the device receives only signatures and the
// public key. `buckyos activate` and the tests use this; the web UI does the same steps in the browser.
import { z } from 'zod';
import { KrpcError, createClient } from '../krpc/index.ts';
import { activationApi, adminPasswordProblem } from '../api/activation.ts';
import {
  DOCUMENT_LIFETIME_SEC, type DeviceDoc, type OwnerDoc, type ZoneBootConfig, deviceDocSchema, deviceName as deviceNameSchema,
  gatewaySchema, ownerDocSchema, signDocument, userName, zoneBootConfigSchema, zoneHost,
} from './documents.ts';
import { checkMnemonic, ownerKeyFromMnemonic } from './mnemonic.ts';

export type GatewayConfig = z.infer<typeof gatewaySchema>;

/** The signed part of a commit request; field names are the wire names so it can be sent as is. */
export interface ActivationDocs {
  owner_key: string;
  zone_boot_jwt: string;
  device_doc_jwt: string;
  owner_doc_jwt: string;
}

export interface ActivationDocsInput {
  mnemonic: string;
  zone: string;
  owner: string;
  deviceName: string;
  /** Public keys (base64url) the device offered in `prepare`. */
  deviceKey: string;
  verifyHubKey: string;
  enrolKey: string;
  gateway: GatewayConfig;
}

function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const why = r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
    throw new KrpcError('INVALID_PARAMS', `${what}: ${why}`);
  }
  return r.data;
}

/** Builds and signs the zone boot config, the device document and the owner document with the owner key. */
export async function buildActivationDocs(input: ActivationDocsInput): Promise<ActivationDocs> {
  const owner = ownerKeyFromMnemonic(input.mnemonic);
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + DOCUMENT_LIFETIME_SEC;
  const boot: ZoneBootConfig = checked(zoneBootConfigSchema, {
    typ: 'zone-boot',
    zone: input.zone,
    owner: input.owner,
    owner_key: owner.publicKeyB64,
    verify_hub_key: input.verifyHubKey,
    enrol_key: input.enrolKey,
    core_nodes: [input.deviceName],
    gateway: input.gateway,
    iat,
    exp,
  }, 'zone boot config');
  const device: DeviceDoc = checked(deviceDocSchema, {
    typ: 'device',
    name: input.deviceName,
    zone: input.zone,
    did: `did:dev:${input.deviceKey}`,
    key: input.deviceKey,
    role: 'core',
    iat,
    exp,
  }, 'device document');
  const ownerDoc: OwnerDoc = checked(ownerDocSchema, {
    typ: 'owner',
    name: input.owner,
    zone: input.zone,
    key: owner.publicKeyB64,
    iat,
    exp,
  }, 'owner document');
  return {
    owner_key: owner.publicKeyB64,
    zone_boot_jwt: await signDocument(boot, owner.privateKey),
    device_doc_jwt: await signDocument(device, owner.privateKey),
    owner_doc_jwt: await signDocument(ownerDoc, owner.privateKey),
  };
}

export interface ActivateDeviceOptions {
  mnemonic: string;
  zone: string;
  owner: string;
  /** The owner's initial admin password; it reaches the device only to be hashed there. */
  password: string;
  /** Defaults to the name the device suggests from its host name. */
  deviceName?: string;
  gateway?: GatewayConfig;
  timeoutMs?: number;
}

export interface ActivationResult {
  zone: string;
  zone_did: string;
  device_name: string;
  device_did: string;
  owner: string;
  owner_key: string;
}

/**
 * prepare → sign → commit against a device's activation port. Everything that can be checked here is checked before
 * the device is contacted, so a typo costs no attempt; the device checks it all again.
 */
export async function activateDevice(baseUrl: string, opts: ActivateDeviceOptions): Promise<ActivationResult> {
  checkMnemonic(opts.mnemonic);
  const zone = checked(zoneHost, opts.zone, 'zone');
  const owner = checked(userName, opts.owner, 'owner');
  if (opts.deviceName !== undefined) checked(deviceNameSchema, opts.deviceName, 'device name');
  const gateway = checked(gatewaySchema, opts.gateway ?? { mode: 'lan' }, 'gateway');
  const problem = adminPasswordProblem(opts.password, { user: owner, zone });
  if (problem) throw new KrpcError('INVALID_PARAMS', problem);

  const client = createClient(activationApi, { baseUrl, timeoutMs: opts.timeoutMs ?? 30_000 });
  const prepared = await client.prepare(opts.deviceName === undefined ? {} : { device_name: opts.deviceName });
  // The keys the device offers are checked as Ed25519 keys by the document schemas before the owner signs them.
  const docs = await buildActivationDocs({
    mnemonic: opts.mnemonic,
    zone,
    owner,
    deviceName: prepared.device_name,
    deviceKey: prepared.device_key,
    verifyHubKey: prepared.verify_hub_key,
    enrolKey: prepared.enrol_key,
    gateway,
  });
  const done = await client.commit({ attempt_id: prepared.attempt_id, ...docs, admin_password: opts.password });
  return { ...done, owner_key: docs.owner_key };
}
