// The owner's recovery phrase on Node: the pure derivation (recovery-phrase.ts, shared with the browser) plus the
// owner key as a node:crypto key pair, which the services and tests sign and verify with.
import { type KeyPair, keyPairFromSeed } from './keys.ts';
import { ownerSeedFromMnemonic } from './recovery-phrase.ts';

export {
  MNEMONIC_WORDS, MnemonicError, OWNER_KEY_PATH, OWNER_KEY_PURPOSE, checkMnemonic, generateMnemonic, mnemonicToSeed,
  normalizeMnemonic, ownerSeedFromMnemonic, slip10DeriveEd25519,
} from './recovery-phrase.ts';

/** The zone owner's key pair for a mnemonic. */
export function ownerKeyFromMnemonic(mnemonic: string): KeyPair {
  return keyPairFromSeed(ownerSeedFromMnemonic(mnemonic));
}
