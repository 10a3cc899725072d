import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { generateKeyPair } from '../identity/keys.ts';
import { certPublicKeyB64 } from '../identity/tls-certs.ts';
import { deviceTunnelCert } from './device-cert.ts';

describe('deviceTunnelCert', () => {
  it('certifies the device key, self-signed, as <device>.<zone>', async () => {
    const deviceKey = generateKeyPair();
    const pem = await deviceTunnelCert({ deviceKey, device: { name: 'ood1' }, boot: { zone: 'alice.example.com' } });
    const cert = new X509Certificate(pem);
    assert.equal(cert.subject, 'CN=ood1.alice.example.com');
    assert.equal(cert.issuer, cert.subject);
    assert.equal(certPublicKeyB64(pem), deviceKey.publicKeyB64);
  });
});
