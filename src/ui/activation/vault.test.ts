// The browser's sealed owner key: it opens with the password it was sealed with and with nothing else, and a record
// altered in any field is refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { VaultError, loadVault, openOwnerKey, saveVault, sealOwnerKey } from './vault.ts';

const FAST = { N: 2 ** 10, r: 8, p: 1 };
const META = { zone: 'alice.example.com', owner: 'alice', publicKey: 'A'.repeat(43) };

describe('owner key vault', () => {
  it('opens with the right password and keeps no plaintext in the record', async () => {
    const secret = randomBytes(32);
    const rec = await sealOwnerKey(secret, 'Correct-horse-9', META, FAST);
    const text = JSON.stringify(rec);
    assert.ok(!text.includes(secret.toString('base64url')) && !text.includes(secret.toString('hex')) && !text.includes('Correct-horse-9'));
    assert.deepEqual(Buffer.from(await openOwnerKey(rec, 'Correct-horse-9')), secret);
    // NFC: the same password typed as decomposed characters opens it too.
    const rec2 = await sealOwnerKey(secret, 'Café-password-1', META, FAST);
    assert.deepEqual(Buffer.from(await openOwnerKey(rec2, 'Cafe\u0301-password-1')), secret);
  });

  it('refuses a wrong password and a record whose zone, key or ciphertext was changed', async () => {
    const rec = await sealOwnerKey(randomBytes(32), 'Correct-horse-9', META, FAST);
    const refused = (p: Promise<unknown>) => assert.rejects(p, (e: unknown) => e instanceof VaultError && e.reason === 'wrong-password');
    await refused(openOwnerKey(rec, 'Correct-horse-8'));
    await refused(openOwnerKey({ ...rec, zone: 'bob.example.com' }, 'Correct-horse-9'));
    await refused(openOwnerKey({ ...rec, public_key: 'B'.repeat(43) }, 'Correct-horse-9'));
    const ct = rec.seal.ciphertext;
    await refused(openOwnerKey({ ...rec, seal: { ...rec.seal, ciphertext: (ct[0] === 'A' ? 'B' : 'A') + ct.slice(1) } }, 'Correct-horse-9'));
    await assert.rejects(openOwnerKey({ ...rec, v: 2 } as never, 'Correct-horse-9'), (e: unknown) => e instanceof VaultError && e.reason === 'malformed');
  });

  it('stores one record per zone', async () => {
    const map = new Map<string, string>();
    const store = { getItem: (k: string) => map.get(k) ?? null, setItem: (k: string, v: string) => void map.set(k, v) };
    const rec = await sealOwnerKey(randomBytes(32), 'Correct-horse-9', META, FAST);
    saveVault(store, rec);
    assert.deepEqual(loadVault(store, META.zone), rec);
    assert.equal(loadVault(store, 'other.example.com'), null);
  });
});
