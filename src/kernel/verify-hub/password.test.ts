import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { scryptSync } from 'node:crypto';
import {
  SCRYPT_PARAMS, hashPassword, needsRehash, passwordHashSchema, passwordStrengthProblem, verifyAgainstDummy, verifyPassword,
} from './password.ts';

describe('password hashing', () => {
  it('hashes with a per-user salt and verifies', async () => {
    const a = await hashPassword('correct horse 1');
    const b = await hashPassword('correct horse 1');
    assert.equal(a.N, SCRYPT_PARAMS.N);
    assert.equal(Buffer.from(a.salt, 'base64').length, 16);
    assert.notEqual(a.salt, b.salt);
    assert.notEqual(a.hash, b.hash);
    assert.equal(await verifyPassword('correct horse 1', a), true);
    assert.equal(await verifyPassword('correct horse 2', a), false);
    assert.equal(passwordHashSchema.safeParse(a).success, true);
  });

  it('verifies a hash written by another scrypt implementation (owner_admin.json)', async () => {
    const salt = Buffer.from('0123456789abcdef');
    const hash = scryptSync('Owner-pass-2024', salt, 64, { N: 2 ** 14, r: 8, p: 1 });
    const stored = { N: 2 ** 14, r: 8, p: 1, salt: salt.toString('base64'), hash: hash.toString('base64') };
    assert.equal(passwordHashSchema.safeParse(stored).success, true);
    assert.equal(await verifyPassword('Owner-pass-2024', stored), true);
    assert.equal(needsRehash(stored), true);
  });

  it('refuses weak or absurd stored parameters', () => {
    const ok = { N: 2 ** 15, r: 8, p: 1, salt: Buffer.alloc(16).toString('base64'), hash: Buffer.alloc(32).toString('base64') };
    assert.equal(passwordHashSchema.safeParse(ok).success, true);
    for (const bad of [{ N: 1024 }, { N: 2 ** 15 + 1 }, { N: 2 ** 22 }, { r: 0 }, { salt: Buffer.alloc(4).toString('base64') }, { hash: 'not base64!' }]) {
      assert.equal(passwordHashSchema.safeParse({ ...ok, ...bad }).success, false, JSON.stringify(bad));
    }
  });

  it('answers false for the dummy check of unknown users', async () => {
    assert.equal(await verifyAgainstDummy('anything'), false);
  });
});

describe('password strength', () => {
  it('names the rule a password breaks', () => {
    assert.match(passwordStrengthProblem('Short1', 'bob')!, /at least 10 characters/);
    assert.match(passwordStrengthProblem('alllowercaseletters', 'bob')!, /two kinds of characters/);
    assert.match(passwordStrengthProblem('1234567890123', 'bob')!, /two kinds of characters/);
    assert.match(passwordStrengthProblem('my-Alice-password', 'alice')!, /must not contain the user name/);
    assert.equal(passwordStrengthProblem('correct horse', 'bob'), null);
    assert.equal(passwordStrengthProblem('Tr0ub4dor&3x', 'bob'), null);
  });

  it('counts characters, not bytes', () => {
    assert.match(passwordStrengthProblem('ééééé1', 'bob')!, /at least 10/);
    assert.equal(passwordStrengthProblem('éééééééééé', 'bob')?.includes('two kinds'), true);
  });
});
