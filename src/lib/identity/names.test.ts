// The browser-safe key check must accept exactly what decoding the key with Node does.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { b64Key } from './names.ts';
import { publicKeyFromB64 } from './keys.ts';

describe('b64Key', () => {
  it('accepts a 43-character key exactly when Node reads it as a canonical 32-byte key', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < 2000; i++) {
      const key = Array.from(randomBytes(43), (b) => alphabet[b % 64]).join('');
      let node = true;
      try {
        publicKeyFromB64(key);
      } catch {
        node = false;
      }
      assert.equal(b64Key.safeParse(key).success, node, key);
    }
    assert.equal(b64Key.safeParse(randomBytes(32).toString('base64url')).success, true);
  });
});
