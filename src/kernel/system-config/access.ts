// RBAC for config keys, kept in step with the store itself: a user's role comes from `users/<u>/settings`, the
// scheduler-generated policy tail from `system/rbac/policy`. Deleting a user's settings removes every grant at once,
// in the same process that enforces them, so there is no window where a deleted user still passes.
import type { Principal } from '../../lib/krpc/index.ts';
import { Rbac, accessRequest } from '../../lib/rbac/enforcer.ts';
import type { ConfigStore } from './store.ts';
import type { ConfigAccess } from './service.ts';
import { RBAC_TAIL_KEY, affectsPolicy, applyPolicyEntry } from '../../lib/rbac/config-sync.ts';

/** RBAC on `obj://config/<key>` from an enforcer that follows the store's own policy inputs. */
export async function createRbacConfigAccess(store: ConfigStore, signal: AbortSignal, onError: (err: unknown) => void): Promise<ConfigAccess> {
  const rbac = await Rbac.create();
  const policy = await followAccessPolicy(store, rbac, signal, onError);
  return {
    allowed: (p: Principal, key: string, action) => rbac.check(accessRequest(p, `obj://config/${key}`, action)),
    afterWrite: async (changes) => {
      if (changes.some((c) => affectsPolicy(c.key))) await policy.catchUp();
    },
  };
}

interface PolicyFollower {
  /** Applies every change up to the store's current revision; the write path awaits it so a grant change is in
   * force before the write that made it is acknowledged. */
  catchUp(): Promise<void>;
}

/** Loads the current policy inputs, then follows changes in the background until `signal` aborts. */
async function followAccessPolicy(store: ConfigStore, rbac: Rbac, signal: AbortSignal, onError: (err: unknown) => void): Promise<PolicyFollower> {
  let after = await store.currentRevision();
  for (const prefix of ['users/', RBAC_TAIL_KEY]) {
    const listed = await store.list(prefix);
    for (const e of listed.entries) applyPolicyEntry(rbac, e.key, e.value, onError);
  }
  let running: Promise<void> | null = null;
  const drain = async () => {
    for (;;) {
      const events = await store.changesSince('', after, 1000);
      for (const ev of events) applyPolicyEntry(rbac, ev.key, ev.value, onError);
      if (events.length === 0) return;
      after = events[events.length - 1].revision;
    }
  };
  const catchUp = () => {
    // One drain at a time; a caller arriving mid-drain chains another so its own write is surely covered.
    const next = (running ?? Promise.resolve()).then(drain, drain);
    // The caller handles `next`'s failure; the chain itself must never hold a rejection nobody awaits (a store that is
    // briefly unreachable would otherwise end the process).
    const tracked: Promise<void> = next.catch(() => undefined).finally(() => {
      if (running === tracked) running = null;
    });
    running = tracked;
    return next;
  };
  void (async () => {
    while (!signal.aborted) {
      try {
        await catchUp();
        await store.waitForChange(after, 30_000, signal);
      } catch (err) {
        if (signal.aborted) return;
        onError(err);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  })();
  return { catchUp };
}
