// The owner key kept in the browser (docs/ui-activation.md): sealed with a key derived from the admin password and
// stored in this origin's localStorage; never sent anywhere. Sealing uses @noble/ciphers and @noble/hashes rather than
// WebCrypto, whose subtle API (AES-GCM and friends) exists only in secure contexts, and an unactivated device is
// opened over plain HTTP on the LAN:
//   key    = scrypt(NFC(password), salt, N=2^15, r=8, p=1, 32 bytes)
//   sealed = XChaCha20-Poly1305(key, 24-byte random nonce, associated data: zone, owner and public key)(secret)
// The associated data binds the record to its zone, owner and key: a record with any field altered does not open.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { scryptAsync } from '@noble/hashes/scrypt.js';
import { base64url, fromBase64url } from '../../lib/identity/base64url.ts';

export const VAULT_STORAGE_PREFIX = 'buckyos.owner-key.';
const SCRYPT = { N: 2 ** 15, r: 8, p: 1 };

export interface VaultRecord {
  v: 1;
  zone: string;
  owner: string;
  /** base64url of the owner's public key, to recognise the key without opening it. */
  public_key: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  /** The ciphertext carries Poly1305's tag at its end. */
  seal: { name: 'xchacha20poly1305'; nonce: string; ciphertext: string };
  created_at: string;
}

export class VaultError extends Error {
  constructor(
    readonly reason: 'wrong-password' | 'malformed',
    message: string,
  ) {
    super(message);
    this.name = 'VaultError';
  }
}

const enc = new TextEncoder();

async function deriveKey(password: string, salt: Uint8Array, kdf: { N: number; r: number; p: number }): Promise<Uint8Array> {
  return scryptAsync(enc.encode(password.normalize('NFC')), salt, { ...kdf, dkLen: 32 });
}

const context = (r: Pick<VaultRecord, 'zone' | 'owner' | 'public_key'>) => enc.encode(`buckyos-owner-key-v1\0${r.zone}\0${r.owner}\0${r.public_key}\0`);

/** Seals the 32-byte owner secret under `password`. `kdf` is for tests; the default costs about a second. */
export async function sealOwnerKey(
  secret: Uint8Array,
  password: string,
  meta: { zone: string; owner: string; publicKey: string },
  kdf: { N: number; r: number; p: number } = SCRYPT,
): Promise<VaultRecord> {
  if (secret.length !== 32) throw new Error('the vault seals a 32-byte key');
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const nonce = crypto.getRandomValues(new Uint8Array(24));
  const key = await deriveKey(password, salt, kdf);
  const head = { zone: meta.zone, owner: meta.owner, public_key: meta.publicKey };
  const ciphertext = xchacha20poly1305(key, nonce, context(head)).encrypt(secret);
  return {
    v: 1,
    ...head,
    kdf: { name: 'scrypt', ...kdf, salt: base64url(salt) },
    seal: { name: 'xchacha20poly1305', nonce: base64url(nonce), ciphertext: base64url(ciphertext) },
    created_at: new Date().toISOString(),
  };
}

/** Opens a sealed record; a wrong password (or a record altered in any field) is refused, never decrypted to noise. */
export async function openOwnerKey(record: VaultRecord, password: string): Promise<Uint8Array> {
  if (record?.v !== 1 || record.kdf?.name !== 'scrypt' || record.seal?.name !== 'xchacha20poly1305') {
    throw new VaultError('malformed', 'this is not a sealed owner key this page can open');
  }
  const key = await deriveKey(password, fromBase64url(record.kdf.salt), record.kdf);
  try {
    return xchacha20poly1305(key, fromBase64url(record.seal.nonce), context(record)).decrypt(fromBase64url(record.seal.ciphertext));
  } catch {
    throw new VaultError('wrong-password', 'the password does not open this owner key');
  }
}

/** What the vault needs of localStorage. */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export function saveVault(store: KeyValueStore, record: VaultRecord): void {
  store.setItem(VAULT_STORAGE_PREFIX + record.zone, JSON.stringify(record));
}

export function loadVault(store: KeyValueStore, zone: string): VaultRecord | null {
  const raw = store.getItem(VAULT_STORAGE_PREFIX + zone);
  if (raw === null) return null;
  try {
    return JSON.parse(raw) as VaultRecord;
  } catch {
    return null;
  }
}
