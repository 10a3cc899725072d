// The owner's 12 words (BIP-39) and the 32-byte owner key seed they deterministically stand for. Free of Node built-ins:
// the CLI and the browser's activation page (src/ui/activation) both derive the owner key with this one
// implementation. The derivation is standard so that any BIP-39 + SLIP-0010 implementation yields the same key:
//   seed  = BIP-39 seed of the normalised mnemonic, empty passphrase (PBKDF2-HMAC-SHA512, 2048 rounds)
//   key   = SLIP-0010 ed25519 derivation of `seed` along OWNER_KEY_PATH
//   owner = the Ed25519 key pair whose RFC 8032 secret key is `key`
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { generateMnemonic as bip39Generate, mnemonicToSeedSync, validateMnemonic as bip39Validate } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';

export const MNEMONIC_WORDS = 12;

/**
 * BIP-43 purpose 0x62636b79 ("bcky" in ASCII) rather than BIP-44's 44': no wallet derives under this purpose, so the
 * same words typed into a cryptocurrency wallet never yield the owner key, whatever coin numbers get registered.
 * Levels after the purpose: zone account 0', key role 0' (the owner signing key; other roles such as backup
 * encryption keys take other numbers), key index 0'. SLIP-0010 ed25519 allows hardened levels only.
 */
export const OWNER_KEY_PURPOSE = 0x62636b79;
export const OWNER_KEY_PATH = `m/${OWNER_KEY_PURPOSE}'/0'/0'/0'`;

const HARDENED = 0x80000000;
const words = new Map(wordlist.map((w, i) => [w, i]));

/** The BIP-39 English word list, for pickers and hints. */
export const WORDLIST: readonly string[] = wordlist;

export class MnemonicError extends Error {
  constructor(
    readonly reason: 'word-count' | 'unknown-word' | 'checksum',
    message: string,
    /** The offending word, for 'unknown-word'. */
    readonly word?: string,
    /** Its position, 1-based, for 'unknown-word'. */
    readonly position?: number,
  ) {
    super(message);
    this.name = 'MnemonicError';
  }
}

/** A fresh 12-word English mnemonic: 128 bits of entropy from crypto.getRandomValues (Node's or the browser's). */
export function generateMnemonic(): string {
  return bip39Generate(wordlist, 128);
}

/** Lower-case, NFKD, single spaces: how people type words differs, the seed must not. */
export function normalizeMnemonic(mnemonic: string): string {
  return mnemonic.normalize('NFKD').trim().toLowerCase().split(/\s+/).filter(Boolean).join(' ');
}

/** Validates a mnemonic and returns its normalised form; the error says which word or rule is wrong. */
export function checkMnemonic(mnemonic: string): string {
  const norm = normalizeMnemonic(mnemonic);
  const list = norm === '' ? [] : norm.split(' ');
  if (list.length !== MNEMONIC_WORDS) {
    throw new MnemonicError('word-count', `a recovery phrase has ${MNEMONIC_WORDS} words, this one has ${list.length}`);
  }
  list.forEach((w, i) => {
    if (words.has(w)) return;
    // BIP-39 English words are unique in their first four letters, so a matching prefix names the intended word.
    const guess = w.length >= 4 ? wordlist.find((c) => c.startsWith(w.slice(0, 4))) : undefined;
    const hint = guess ? ` (did you mean "${guess}"?)` : '';
    throw new MnemonicError('unknown-word', `word ${i + 1}, "${w}", is not in the BIP-39 English word list${hint}`, w, i + 1);
  });
  if (!bip39Validate(norm, wordlist)) {
    throw new MnemonicError('checksum', 'the recovery phrase checksum does not match: a word is wrong or the words are out of order');
  }
  return norm;
}

/** The 64-byte BIP-39 seed. Validates first: a seed from a mistyped phrase would silently be another owner. */
export function mnemonicToSeed(mnemonic: string, passphrase = ''): Uint8Array {
  return mnemonicToSeedSync(checkMnemonic(mnemonic), passphrase);
}

function parsePath(path: string): number[] {
  const parts = path.split('/');
  if (parts[0] !== 'm') throw new Error(`derivation path "${path}" must start with "m"`);
  return parts.slice(1).map((p) => {
    const m = /^(\d+)['hH]$/.exec(p);
    if (!m) throw new Error(`derivation path "${path}": "${p}" is not a hardened index (ed25519 derives hardened keys only)`);
    const n = Number(m[1]);
    if (!Number.isSafeInteger(n) || n >= HARDENED) throw new Error(`derivation path "${path}": index ${m[1]} is out of range`);
    return n + HARDENED;
  });
}

const SLIP10_ED25519 = new TextEncoder().encode('ed25519 seed');

/** SLIP-0010 private key derivation on ed25519 (hardened levels only). */
export function slip10DeriveEd25519(seed: Uint8Array, path: string): { key: Uint8Array; chainCode: Uint8Array } {
  if (seed.length < 16 || seed.length > 64) throw new Error(`a SLIP-0010 seed is 16 to 64 bytes, got ${seed.length}`);
  let I = hmac(sha512, SLIP10_ED25519, seed);
  for (const index of parsePath(path)) {
    const data = new Uint8Array(37);
    data.set(I.subarray(0, 32), 1);
    new DataView(data.buffer).setUint32(33, index, false);
    I = hmac(sha512, I.subarray(32), data);
  }
  return { key: I.slice(0, 32), chainCode: I.slice(32) };
}

/** The owner key's 32-byte Ed25519 secret (RFC 8032) for a mnemonic; see the derivation at the top of this file. */
export function ownerSeedFromMnemonic(mnemonic: string): Uint8Array {
  return slip10DeriveEd25519(mnemonicToSeed(mnemonic), OWNER_KEY_PATH).key;
}
