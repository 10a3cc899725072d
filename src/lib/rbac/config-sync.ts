// How RBAC inputs are stored in system-config, shared by every process that enforces RBAC: a user's role is the
// `role` of `users/<u>/settings` (a disabled or deleted user has none), and the scheduler-generated tail is the
// CSV text at `system/rbac/policy`.
import type { Rbac } from './enforcer.ts';
import { listAll } from '../config/list-all.ts';
import { USER_SETTINGS_KEY } from '../config/user-records.ts';

export const RBAC_TAIL_KEY = 'system/rbac/policy';

export function affectsPolicy(key: string): boolean {
  return key === RBAC_TAIL_KEY || USER_SETTINGS_KEY.test(key);
}

/** The role a `users/<u>/settings` record (null: absent) gives its user: none when it is missing, malformed or the
 * account is disabled. Every place that turns an account record into rights reads it through this. */
export function effectiveRole(value: string | null): string | undefined {
  if (value === null) return undefined;
  try {
    const v = JSON.parse(value) as { role?: unknown; state?: unknown } | null;
    if (!v || typeof v !== 'object' || typeof v.role !== 'string' || v.state === 'disabled') return undefined;
    return v.role;
  } catch {
    return undefined;
  }
}

/** Applies one stored key (null: deleted) to the enforcer. Keys that are not RBAC inputs are ignored. */
export function applyPolicyEntry(rbac: Rbac, key: string, value: string | null, onError: (err: unknown) => void): void {
  if (key === RBAC_TAIL_KEY) {
    try {
      rbac.loadTail(value ?? '');
    } catch (err) {
      // A bad tail is refused whole and the previous one stays in force: never half a policy.
      onError(err);
    }
    return;
  }
  const m = USER_SETTINGS_KEY.exec(key);
  if (!m) return;
  const role = effectiveRole(value);
  if (role === undefined) {
    rbac.removeUser(m[1]);
    return;
  }
  try {
    rbac.setUserRole(m[1], role);
  } catch (err) {
    onError(err);
    rbac.removeUser(m[1]);
  }
}

/** The part of the system-config client a policy follower needs. */
export interface PolicySource {
  list(p: { prefix: string; limit?: number; keys_only?: boolean }): Promise<{ entries: { key: string; value: string }[]; revision: number; more: boolean }>;
  watch(
    p: { prefix: string; after_revision: number; timeout_ms?: number },
    o?: { timeoutMs?: number },
  ): Promise<{ events: { key: string; value: string | null }[]; revision: number }>;
}

/** For processes other than system-config: load the inputs, then follow each prefix by watch until `signal` aborts.
 * Resolves once the initial policy is loaded. */
export async function followPolicy(source: PolicySource, rbac: Rbac, signal: AbortSignal, onError: (err: unknown) => void): Promise<void> {
  // Users this follower has seen, so a re-list after a watch gap can drop those deleted meanwhile.
  const known = new Set<string>();
  const apply = (key: string, value: string | null) => {
    const m = USER_SETTINGS_KEY.exec(key);
    if (m) {
      if (value === null) known.delete(m[1]);
      else known.add(m[1]);
    }
    applyPolicyEntry(rbac, key, value, onError);
  };
  const load = async (prefix: string) => {
    // The watch starts from before the listing, which may take several pages: a change meanwhile is applied again.
    const { revision } = await source.list({ prefix, limit: 1, keys_only: true });
    const entries = await listAll((p) => source.list(p), prefix);
    const present = new Set<string>();
    for (const e of entries) {
      const m = USER_SETTINGS_KEY.exec(e.key);
      if (m) present.add(m[1]);
      apply(e.key, e.value);
    }
    if (prefix === 'users/') for (const name of [...known]) if (!present.has(name)) apply(`users/${name}/settings`, null);
    return revision;
  };
  const follow = async (prefix: string, from: number) => {
    let rev = from;
    while (!signal.aborted) {
      try {
        if (rev === 0) rev = await load(prefix);
        const w = await source.watch({ prefix, after_revision: rev, timeout_ms: 25_000 }, { timeoutMs: 35_000 });
        for (const ev of w.events) apply(ev.key, ev.value);
        rev = w.revision;
      } catch (err) {
        if (signal.aborted) return;
        onError(err);
        rev = 0;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  };
  for (const prefix of ['users/', RBAC_TAIL_KEY]) {
    const rev = await load(prefix);
    void follow(prefix, rev);
  }
}
