// Password hashing (scrypt, memory-hard so a stolen credential store is slow to attack on GPUs) and the strength
// rules for new passwords.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { MIN_PASSWORD_LENGTH, passwordStrength } from '../../lib/api/verify-hub.ts';

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** OWASP's scrypt baseline: 32 MiB and about 50-100 ms per hash on a small ARM board. */
export const SCRYPT_PARAMS: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;

/** What is stored, and what activation writes into etc/owner_admin.json. salt and hash are base64. */
export const passwordHashSchema = z.object({
  // Bounds keep a corrupt or hostile record from either weakening the hash or making one login cost gigabytes.
  N: z.number().int().min(2 ** 14).max(2 ** 20).refine((n) => (n & (n - 1)) === 0, 'N must be a power of two'),
  r: z.number().int().min(1).max(32),
  p: z.number().int().min(1).max(16),
  salt: z.string().base64().refine((s) => Buffer.from(s, 'base64').length >= 16, 'salt must be at least 16 bytes'),
  hash: z.string().base64().refine((s) => {
    const n = Buffer.from(s, 'base64').length;
    return n >= 16 && n <= 64;
  }, 'hash must be 16-64 bytes'),
});
export type PasswordHash = z.infer<typeof passwordHashSchema>;

function derive(password: string, salt: Buffer, params: ScryptParams, keyLen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Node's default ceiling (32 MiB) sits right at what N=2^15, r=8 needs (128·N·r), so leave twice that.
    const maxmem = 256 * params.N * params.r;
    scrypt(password.normalize('NFC'), salt, keyLen, { N: params.N, r: params.r, p: params.p, maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export async function hashPassword(password: string, params: ScryptParams = SCRYPT_PARAMS): Promise<PasswordHash> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, params, HASH_BYTES);
  return { ...params, salt: salt.toString('base64'), hash: hash.toString('base64') };
}

export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await derive(password, Buffer.from(stored.salt, 'base64'), stored, expected.length);
  return timingSafeEqual(actual, expected);
}

let dummy: Promise<PasswordHash> | null = null;

/** Spends the same work as checking a real password, so an unknown user name answers no faster than a wrong
 * password. Always false. */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummy ??= hashPassword(randomBytes(16).toString('base64'));
  await verifyPassword(password, await dummy);
  return false;
}

/** True when a stored hash is weaker than today's parameters and should be replaced at the next successful login. */
export function needsRehash(stored: PasswordHash): boolean {
  return stored.N < SCRYPT_PARAMS.N || stored.r < SCRYPT_PARAMS.r || stored.p < SCRYPT_PARAMS.p;
}

/** The first strength rule a new password breaks, as a sentence for the user; null when it passes. */
export function passwordStrengthProblem(password: string, user: string): string | null {
  const kept = passwordStrength(password, user);
  if (!kept.length) return `password must be at least ${MIN_PASSWORD_LENGTH} characters long`;
  if (!kept.kinds) return 'password must mix at least two kinds of characters (lowercase letters, uppercase letters, digits, symbols)';
  if (!kept.no_user) return 'password must not contain the user name';
  return null;
}
