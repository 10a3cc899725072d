// Helpers the tunnel tests share: devices with keys and certificates, a port nothing listens on, reading a body, and
// checking a TunnelError.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
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

/** A port nothing listens on: taken from the system, then released. */
export async function closedPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
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
