// The owner's side of activation on Node: `buckyos activate` and the tests. The words become the owner key here, on
// the owner's machine, and the signing is activation-docs.ts, the same code the browser's activation page runs.
import { createClient } from '../krpc/index.ts';
import { activationApi } from '../api/activation.ts';
import {
  type ActivationDocs, type ActivationResult, type GatewayConfig, activateWithKey, ownerSigningKey, signActivationDocs,
} from './activation-docs.ts';
import { ownerSeedFromMnemonic } from './recovery-phrase.ts';

export type { ActivationDocs, ActivationResult, GatewayConfig } from './activation-docs.ts';

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

/** Builds and signs the zone boot config, the device document and the owner document with the owner key. */
export async function buildActivationDocs(input: ActivationDocsInput): Promise<ActivationDocs> {
  const { mnemonic, owner, ...rest } = input;
  return signActivationDocs({ ...rest, ownerName: owner, owner: ownerSigningKey(ownerSeedFromMnemonic(mnemonic)) });
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

/**
 * prepare → sign → commit against a device's activation port. Everything that can be checked here is checked before
 * the device is contacted, so a typo costs no attempt; the device checks it all again.
 */
export async function activateDevice(baseUrl: string, opts: ActivateDeviceOptions): Promise<ActivationResult> {
  // Checks the words first (MnemonicError names the wrong word), as the device never sees them.
  const owner = ownerSigningKey(ownerSeedFromMnemonic(opts.mnemonic));
  const client = createClient(activationApi, { baseUrl, timeoutMs: opts.timeoutMs ?? 30_000 });
  return activateWithKey(client, owner, {
    zone: opts.zone, owner: opts.owner, password: opts.password, deviceName: opts.deviceName, gateway: opts.gateway,
  });
}
