// What verify-hub keeps in system-config, and where. Every record is validated when read, so a hand-edited or
// corrupt value fails loudly at the key that holds it instead of deep inside a login.
import { z } from 'zod';
import { userRole } from '../../lib/api/verify-hub.ts';
import { passwordHashSchema } from './password.ts';
import type { KvStore } from './kv.ts';

export const KEYS = {
  usersPrefix: 'users/',
  userPrefix: (name: string) => `users/${name}/`,
  settings: (name: string) => `users/${name}/settings`,
  credentials: (name: string) => `system/verify-hub/credentials/${name}`,
  sessionsPrefix: 'system/verify-hub/sessions/',
  session: (sid: string) => `system/verify-hub/sessions/${sid}`,
};

export const SETTINGS_KEY_RE = /^users\/([^/]+)\/settings$/;

/** The public user record. Loose, because other parts of the system may keep more facts about a user here. */
export const userSettingsSchema = z
  .object({
    name: z.string(),
    role: userRole,
    state: z.enum(['active', 'disabled']),
    created_at: z.number().int(),
  })
  .passthrough();
export type UserSettings = z.infer<typeof userSettingsSchema>;

export const credentialSchema = passwordHashSchema.extend({
  /** Consecutive failures since the last success or lock. */
  failed_attempts: z.number().int().nonnegative(),
  /** Unix seconds; 0 when not locked. */
  locked_until: z.number().int().nonnegative(),
  updated_at: z.number().int(),
});
export type Credential = z.infer<typeof credentialSchema>;

export const LOGIN_KINDS = ['password', 'owner_key', 'device_key'] as const;

export const sessionSchema = z.object({
  user: z.string(),
  app: z.string(),
  login: z.enum(LOGIN_KINDS),
  /** did:dev of the device that signed a device-key login. */
  device: z.string().optional(),
  created_at: z.number().int(),
  /** When the current refresh token stops working (unix seconds). */
  expires_at: z.number().int(),
  /** sha256 (hex) of the current refresh token; the token itself is never stored. */
  refresh_hash: z.string(),
  refresh_generation: z.number().int().nonnegative(),
  /** sha256 of the most recent superseded refresh tokens: presenting one of them is reuse, not a typo. */
  used_hashes: z.array(z.string()),
  last_refresh_at: z.number().int().nullable(),
  revoked: z.boolean(),
  revoked_reason: z.string().optional(),
});
export type SessionRecord = z.infer<typeof sessionSchema>;

export interface Versioned<T> {
  value: T;
  revision: number;
}

export function parseRecord<T>(key: string, raw: string, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new Error(`system-config key ${key} does not hold JSON`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new Error(`system-config key ${key} is malformed: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

export async function readRecord<T>(kv: KvStore, key: string, schema: z.ZodType<T>): Promise<Versioned<T> | null> {
  const e = await kv.get({ key });
  if (e.value === null) return null;
  return { value: parseRecord(key, e.value, schema), revision: e.revision };
}
