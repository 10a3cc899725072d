// Joining an existing zone (docs/devices.md): the device takes the offer an admin gave the user, generates its own key,
// proves it holds that key, and asks a core device of the zone (through the tunnel port, pinned to the key the offer
// names) to enrol it. Everything the zone answers is checked against the offer and the owner-signed boot config
// before a file is written, and zone.json is written last: a failed join leaves the device as it was.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import type { NodePaths } from '../../lib/config/node-config.ts';
import {
  type DeviceDoc, DocumentError, type EnrolOffer, type EnrolPeer, openEnrolOffer, verifyOwnerDoc, verifyZoneBootConfig,
  verifyZoneDeviceDoc,
} from '../../lib/identity/documents.ts';
import { signJwt } from '../../lib/identity/jwt.ts';
import {
  type KeyPair, generateKeyPair, privateKeyFromPem, privateKeyToPem, publicKeyFromB64, writeFileAtomic,
} from '../../lib/identity/keys.ts';
import { IDENTITY_FILES, loadNodeIdentity, writeZoneFile } from '../../lib/identity/node-identity.ts';
import { KrpcError, createClient } from '../../lib/krpc/index.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { TunnelClient, tunnelTransport } from '../../lib/tunnel/index.ts';

export interface JoinResult {
  zone: string;
  device: DeviceDoc;
}

function invalid(message: string): never {
  throw new KrpcError('INVALID_PARAMS', message);
}

/** Opens the offer the user pasted: a readable error for anything that is not one, or was altered. */
export async function parseOffer(text: string): Promise<{ jwt: string; offer: EnrolOffer }> {
  try {
    return await openEnrolOffer(text);
  } catch (e) {
    if (e instanceof DocumentError) invalid(`offer: ${e.message}`);
    throw e;
  }
}

async function askZone(offer: EnrolOffer, params: { device_name: string; device_key: KeyPair }, log?: Logger) {
  const proof = await signJwt({ typ: 'enrol-proof', offer: offer.id }, params.device_key.privateKey, { expiresInSec: 300 });
  // No certificate of our own yet: the core device lets an anonymous client reach device_enrol and nothing else.
  const tunnel = new TunnelClient({});
  const failures: string[] = [];
  try {
    for (const peer of offer.peers) {
      const hub = createClient(verifyHubApi, { baseUrl: `tunnel://${peer.name}`, transport: tunnelTransport(tunnel, peer), timeoutMs: 20_000 });
      try {
        return await hub.device_enrol({
          offer_id: offer.id,
          secret: offer.secret,
          device_name: params.device_name,
          device_key: params.device_key.publicKeyB64,
          proof,
        });
      } catch (e) {
        // A refusal is the zone's answer; only an unreachable device is worth trying the next one for.
        if (e instanceof KrpcError && e.code !== 'UNAVAILABLE' && e.code !== 'TIMEOUT') throw e;
        log?.warn({ peer: peer.name, address: peer.address, err: (e as Error).message }, 'core device unreachable for enrolment');
        failures.push(`${peer.name} at ${peer.address}: ${(e as Error).message}`);
      }
    }
  } finally {
    await tunnel.close();
  }
  throw new KrpcError('UNAVAILABLE', `no core device of ${offer.zone} could be reached: ${failures.join('; ')}`);
}

/**
 * Enrols this device with the offer and writes its identity. `deviceName` is used when the offer does not fix one.
 */
export async function joinZone(paths: NodePaths, offerText: string, deviceName: string, log?: Logger): Promise<JoinResult> {
  const { offer } = await parseOffer(offerText);
  const name = offer.name ?? deviceName;
  const deviceKey = generateKeyPair();
  const answer = await askZone(offer, { device_name: name, device_key: deviceKey }, log);

  if (answer.owner_key !== offer.owner_key) invalid('the zone answered with another owner key than the offer names');
  const ownerKey = publicKeyFromB64(answer.owner_key);
  const check = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof DocumentError) invalid(`${what}: ${e.message}`);
      throw e;
    }
  };
  const boot = await check('zone boot config', () => verifyZoneBootConfig(answer.zone_boot_jwt, ownerKey));
  if (boot.zone !== offer.zone) invalid(`the zone answered for "${boot.zone}", but the offer is for "${offer.zone}"`);
  // The offer verified against the key it names; the owner-signed boot config must name that key too.
  if (boot.enrol_key !== offer.enrol_key) invalid('the offer is not signed by the enrolment key of this zone\'s boot config');
  const device = await check('device document', () => verifyZoneDeviceDoc(answer.device_doc_jwt, boot));
  if (device.key !== deviceKey.publicKeyB64) invalid('the device document names another key than this device generated');
  if (device.name !== name || device.role !== offer.role) invalid(`the device document is for ${device.name} (${device.role}), not ${name} (${offer.role})`);
  if (answer.owner_doc_jwt !== null) {
    const ownerDoc = await check('owner document', () => verifyOwnerDoc(answer.owner_doc_jwt!));
    if (ownerDoc.key !== answer.owner_key) invalid('the owner document names another key than the owner key');
  }
  let coreKeys: { verifyHub: KeyPair; enrol: KeyPair } | null = null;
  if (device.role === 'core') {
    if (!answer.core_keys) invalid('a core device must receive the zone keys, and the zone sent none');
    coreKeys = { verifyHub: privateKeyFromPem(answer.core_keys.verify_hub_key), enrol: privateKeyFromPem(answer.core_keys.enrol_key) };
    if (coreKeys.verifyHub.publicKeyB64 !== boot.verify_hub_key || coreKeys.enrol.publicKeyB64 !== boot.enrol_key) {
      invalid('the zone keys sent do not match the zone boot config');
    }
  }
  const peers: EnrolPeer[] = answer.peers.length ? answer.peers : offer.peers;

  const written: string[] = [];
  const write = (file: string, data: string, mode = 0o600): void => {
    const path = join(paths.etc, file);
    writeFileAtomic(path, data, mode);
    written.push(path);
  };
  try {
    write(IDENTITY_FILES.deviceKey, privateKeyToPem(deviceKey.privateKey));
    if (coreKeys) {
      write(IDENTITY_FILES.verifyHubKey, privateKeyToPem(coreKeys.verifyHub.privateKey));
      write(IDENTITY_FILES.enrolKey, privateKeyToPem(coreKeys.enrol.privateKey));
    }
    write(IDENTITY_FILES.peers, JSON.stringify(peers, null, 2) + '\n', 0o644);
    writeZoneFile(paths.etc, {
      owner_key: answer.owner_key,
      zone_boot_jwt: answer.zone_boot_jwt,
      device_doc_jwt: answer.device_doc_jwt,
      ...(answer.owner_doc_jwt !== null ? { owner_doc_jwt: answer.owner_doc_jwt } : {}),
      activated_at: new Date().toISOString(),
    });
    written.unshift(join(paths.etc, IDENTITY_FILES.zone));
    await loadNodeIdentity(paths.etc);
  } catch (e) {
    for (const path of written) rmSync(path, { force: true });
    log?.error({ err: (e as Error).message }, 'join could not write the identity files; rolled back');
    throw new KrpcError('INTERNAL', `enrolled, but could not store the identity files in ${paths.etc}: ${(e as Error).message}; remove the device in the zone and join again`);
  }
  return { zone: boot.zone, device };
}
