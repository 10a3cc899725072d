// Ed25519 keys and DIDs. Raw keys travel as base64url (the JWK `x`/`d` encoding) so the same strings appear in DIDs,
// JWK headers and documents.
import {
  createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject,
} from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ZONE_HOST } from './names.ts';

// DER prefixes for a raw 32-byte Ed25519 key in PKCS#8 / SPKI wrappers (RFC 8410).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** base64url of the 32-byte public key. */
  publicKeyB64: string;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, publicKeyB64: publicKeyToB64(publicKey) };
}

/** The key pair whose private key is the given 32-byte seed (RFC 8032 secret key). */
export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new Error(`an Ed25519 seed is 32 bytes, got ${seed.length}`);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, publicKeyB64: publicKeyToB64(publicKey) };
}

export function publicKeyToB64(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length).toString('base64url');
}

export function publicKeyFromB64(b64: string): KeyObject {
  const raw = Buffer.from(b64, 'base64url');
  if (raw.length !== 32 || raw.toString('base64url') !== b64) {
    throw new Error('an Ed25519 public key is 32 bytes in unpadded base64url');
  }
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

export function privateKeyToPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function privateKeyFromPem(pem: string): KeyPair {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the key file does not hold an Ed25519 private key');
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, publicKeyB64: publicKeyToB64(publicKey) };
}

export function signBytes(key: KeyObject, data: Uint8Array): Buffer {
  return sign(null, data, key);
}

export function verifyBytes(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  return verify(null, data, key, signature);
}

// ---- DIDs ------------------------------------------------------------------------------------------------------

const DID_DEV = /^did:dev:([A-Za-z0-9_-]{43})$/;

export function didDev(publicKeyB64: string): string {
  publicKeyFromB64(publicKeyB64);
  return `did:dev:${publicKeyB64}`;
}

/** The public key a `did:dev:` names; throws on anything else. */
export function keyFromDidDev(did: string): KeyObject {
  const m = DID_DEV.exec(did);
  if (!m) throw new Error(`"${did}" is not a did:dev DID`);
  return publicKeyFromB64(m[1]);
}

export { ZONE_HOST } from './names.ts';

export function didWeb(zoneHost: string): string {
  if (!ZONE_HOST.test(zoneHost)) throw new Error(`"${zoneHost}" is not a valid zone host name (e.g. alice.example.com)`);
  return `did:web:${zoneHost}`;
}

export function hostFromDidWeb(did: string): string {
  if (!did.startsWith('did:web:')) throw new Error(`"${did}" is not a did:web DID`);
  const host = did.slice('did:web:'.length);
  if (!ZONE_HOST.test(host)) throw new Error(`"${did}" does not name a valid host`);
  return host;
}

// ---- key files -------------------------------------------------------------------------------------------------

/** fsync of a file or a directory (a directory's, for the names a rename or a creation left in it), by its path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a file atomically and durably: temp file, fsync, rename, fsync of the directory. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  writeFileSync(tmp, data, { mode });
  fsyncPath(tmp);
  renameSync(tmp, path);
  fsyncPath(dirname(path));
}

export function saveKeyFile(path: string, kp: KeyPair): void {
  writeFileAtomic(path, privateKeyToPem(kp.privateKey), 0o600);
}

export function loadKeyFile(path: string): KeyPair {
  return privateKeyFromPem(readFileSync(path, 'utf8'));
}
