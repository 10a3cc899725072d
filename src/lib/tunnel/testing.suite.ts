// Helpers the tunnel tests share: devices with keys and certificates, reading a body, and checking a TunnelError.
import assert from 'node:assert/strict';
import { type KeyPair, generateKeyPair } from '../identity/keys.ts';
import { selfSignedCert } from '../identity/tls-certs.ts';
import type { TunnelResponse } from './tunnel-client.ts';
import { TunnelError } from './common.ts';

export interface Device {
  name: string;
  key: KeyPair;
  certPem: string;
}

export async function device(name: string): Promise<Device> {
  const key = generateKeyPair();
  return { name, key, certPem: await selfSignedCert({ key, commonName: name }) };
}

export async function text(res: TunnelResponse): Promise<string> {
  let out = '';
  for await (const chunk of res.body) out += String(chunk);
  return out;
}

export function rejectsWith(p: Promise<unknown>, code: TunnelError['code'], message: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TunnelError, `expected a TunnelError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}
