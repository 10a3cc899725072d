// The certificate a device presents on its tunnels, as server (its gateway) and as client (its gateway, and the
// store control asking other core devices where the zone's store went): one spelling of it, so a device is never
// named two ways (docs/tunnel.md §2).
import type { KeyPair } from '../identity/keys.ts';
import { selfSignedCert } from '../identity/tls-certs.ts';

/** What of a device's identity (node-identity.ts NodeIdentity) its tunnel certificate is made from. */
export interface TunnelCertIdentity {
  deviceKey: KeyPair;
  device: { name: string };
  boot: { zone: string };
}

/** This device's tunnel certificate: its device key, self-signed, with the common name `<device>.<zone>`. */
export function deviceTunnelCert(identity: TunnelCertIdentity): Promise<string> {
  return selfSignedCert({ key: identity.deviceKey, commonName: `${identity.device.name}.${identity.boot.zone}` });
}
