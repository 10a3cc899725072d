// `users/<u>/settings`, the public account record (docs/verify-hub.md, "Records"). verify-hub writes it; other
// services read it: RBAC for the role, dfs for which account a name stands for, so that what a deleted account left
// behind never passes to a later account of the same name. Here in lib because its shape is their contract.
import { z } from 'zod';
import { userRole } from '../api/verify-hub.ts';
import { readRecord } from './record.ts';

export const USER_SETTINGS_KEY = /^users\/([^/]+)\/settings$/;

/** Loose, because other parts of the system may keep more facts about a user here. */
export const userSettingsSchema = z
  .object({
    name: z.string(),
    role: userRole,
    state: z.enum(['active', 'disabled']),
    /** Unix seconds. */
    created_at: z.number().int(),
    /** Random, written once when the account is made and never changed or added later: it tells this account from
     * any earlier or later one of the same name. Accounts made before it existed have none (see accountId). */
    id: z.string().regex(/^[\x21-\x7e]{1,128}$/, 'id: 1 to 128 printable ASCII characters').optional(),
  })
  .passthrough();
export type UserSettings = z.infer<typeof userSettingsSchema>;

/**
 * Which account a settings record stands for: its `id`; for an account made before ids, its creation time. Both are
 * kept in the record itself, so the answer survives moves of the store between backends (which renumber revisions).
 */
export function accountId(s: Pick<UserSettings, 'id' | 'created_at'>): string {
  return s.id ?? `created:${s.created_at}`;
}

/** The account of a stored settings record (null: absent), or why it cannot be told. */
export function accountOf(value: string | null): { account: string | null; problem: string | null } {
  const r = readRecord(userSettingsSchema, value, null);
  return { account: r.value === null ? null : accountId(r.value), problem: r.problem };
}
