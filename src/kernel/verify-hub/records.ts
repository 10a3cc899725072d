// What verify-hub keeps in system-config, and where. Every record is validated when read, so a hand-edited or
// corrupt value fails loudly at the key that holds it instead of deep inside a login.
import { z } from 'zod';
import { USER_NAME } from '../../lib/identity/documents.ts';
import { passwordHashSchema } from './password.ts';
import type { KvStore } from './kv.ts';

/**
 * A session id names its user, `<user>:<22 base64url characters>`, so that its record can sit with that user's
 * other sessions and a per-user operation lists only those.
 */
export const SID_RE = new RegExp(`^(${USER_NAME.source.slice(1, -1)}):([A-Za-z0-9_-]{22})$`);

export const KEYS = {
  usersPrefix: 'users/',
  userPrefix: (name: string) => `users/${name}/`,
  settings: (name: string) => `users/${name}/settings`,
  /** Present when `app` is installed for the user. */
  appSpec: (name: string, app: string) => `users/${name}/apps/${app}/spec`,
  credentials: (name: string) => `system/verify-hub/credentials/${name}`,
  sessionsPrefix: 'system/verify-hub/sessions/',
  userSessionsPrefix: (user: string) => `system/verify-hub/sessions/${user}/`,
  /** Only for a sid that matches SID_RE. */
  session: (sid: string) => `system/verify-hub/sessions/${sid.replace(':', '/')}`,
};

/** The sid a session key stands for; null for a key in no shape a session record has. */
export function sidOfKey(key: string): string | null {
  const rest = key.startsWith(KEYS.sessionsPrefix) ? key.slice(KEYS.sessionsPrefix.length) : '';
  const sid = rest.replace('/', ':');
  return SID_RE.test(sid) ? sid : null;
}

/** The public user record; its shape is shared with the services that read it. */
export { USER_SETTINGS_KEY as SETTINGS_KEY_RE, type UserSettings, userSettingsSchema } from '../../lib/config/user-records.ts';

export const credentialSchema = passwordHashSchema.extend({
  /** Consecutive failures since the last success or lock. */
  failed_attempts: z.number().int().nonnegative(),
  /** Unix seconds; 0 when not locked. */
  locked_until: z.number().int().nonnegative(),
  updated_at: z.number().int(),
  /** Sessions begun under another epoch are over. Raised when a password change, a reset or disabling the account
   * must end every session at once, without depending on reaching each session record. Records written before
   * epochs existed are at 0. */
  session_epoch: z.number().int().nonnegative().default(0),
});
export type Credential = z.infer<typeof credentialSchema>;

export const LOGIN_KINDS = ['password', 'owner_key', 'device_key'] as const;

export const sessionSchema = z.object({
  user: z.string(),
  /** create_revision of `users/<user>/settings` at login: a user deleted and created again under the same name has
   * another, so nothing of the former account's sessions carries over. */
  incarnation: z.number().int().nonnegative(),
  /** The user's `session_epoch` at login (0 without a credential record). */
  epoch: z.number().int().nonnegative(),
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
  createRevision: number;
}

export function parseRecord<T>(key: string, raw: string, schema: z.ZodType<T, z.ZodTypeDef, unknown>): T {
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

export async function readRecord<T>(kv: KvStore, key: string, schema: z.ZodType<T, z.ZodTypeDef, unknown>): Promise<Versioned<T> | null> {
  const e = await kv.get({ key });
  if (e.value === null) return null;
  return { value: parseRecord(key, e.value, schema), revision: e.revision, createRevision: e.create_revision };
}
