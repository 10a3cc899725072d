// Home folders follow the zone's accounts (docs/dcfs.md, "Home and public folders"). Every account in system-config has
// a home on every volume this node is primary for, recorded as that account's; what a volume keeps for an account that
// is gone (deleted, or its name now another account's) is set aside (VolumeMeta.retireHome) before a later account of
// the name gets a home, so nothing of one account ever passes to another, and nothing is lost either.
import { listAll } from '../../lib/config/list-all.ts';
import { USER_SETTINGS_KEY, accountOf } from '../../lib/config/user-records.ts';
import { USER_NAME } from '../../lib/identity/documents.ts';
import { HOME_DIR, type VolumeMeta } from './volume-meta.ts';

/** The zone's accounts as system-config holds them. */
export interface ZoneAccounts {
  /** Each account's id (user-records.ts, accountId) by user name. */
  accounts: ReadonlyMap<string, string>;
  /** Names whose record cannot be read: what volumes keep for them is left as it is. */
  unreadable: ReadonlySet<string>;
}

/** The part of a system-config client reading accounts takes. */
export interface AccountSource {
  list(p: { prefix: string; limit?: number; keys_only?: boolean }): Promise<{ entries: { key: string; revision: number }[]; more: boolean }>;
  get(p: { key: string }): Promise<{ value: string | null; revision: number }>;
}

/** Reads the zone's accounts: the settings keys under users/, each record read again only when its revision moved. */
export class AccountReader {
  private readonly known = new Map<string, { revision: number; account: string | null; problem: string | null }>();

  constructor(private readonly source: AccountSource) {}

  /** `problems`: records read this time that cannot be used, and why (each is reported once, not every round). */
  async read(): Promise<ZoneAccounts & { problems: { user: string; problem: string }[] }> {
    // Every key, however many apps keep settings under users/: a name missed would look deleted.
    const entries = await listAll((p) => this.source.list(p), 'users/', { keysOnly: true });
    const listed = new Map<string, number>();
    for (const e of entries) {
      const m = USER_SETTINGS_KEY.exec(e.key);
      if (m) listed.set(m[1]!, e.revision);
    }
    for (const name of [...this.known.keys()]) if (!listed.has(name)) this.known.delete(name);
    const problems: { user: string; problem: string }[] = [];
    for (const [user, revision] of listed) {
      if (this.known.get(user)?.revision === revision) continue;
      const got = USER_NAME.test(user)
        ? { revision, ...accountOf((await this.source.get({ key: `users/${user}/settings` })).value) }
        : { revision, account: null, problem: 'not a user name' };
      this.known.set(user, got);
      if (got.problem) problems.push({ user, problem: got.problem });
    }
    const accounts = new Map<string, string>();
    const unreadable = new Set<string>();
    for (const [user, r] of this.known) {
      if (r.problem) unreadable.add(user);
      // No account: the record went between the listing and the read (a deletion), as if it had not been listed.
      else if (r.account !== null) accounts.set(user, r.account);
    }
    return { accounts, unreadable, problems };
  }
}

export interface HomeChanges {
  /** Homes made, or recorded as their account's (a home from before accounts were recorded). */
  made: string[];
  /** Users whose homes were set aside, and where to (null: there was no home to move). */
  retired: { user: string; to: string | null }[];
  failed: { user: string; error: string }[];
}

/**
 * Brings one volume's homes in line with the zone's accounts: first sets aside what it keeps for a name with no
 * account, or whose home was made for another account of the name, then makes (or records) each account's home. A zone
 * always has its owner, so a listing with no account at all is a store not answering as it should: nothing is set
 * aside then.
 */
export function syncHomes(meta: VolumeMeta, zone: ZoneAccounts): HomeChanges {
  const out: HomeChanges = { made: [], retired: [], failed: [] };
  if (zone.accounts.size === 0) return out;
  const each = (user: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      out.failed.push({ user, error: (err as Error).message });
    }
  };
  for (const { user, account } of meta.homeUsers()) {
    if (zone.unreadable.has(user)) continue;
    const now = zone.accounts.get(user);
    if (now !== undefined && (account === null || account === now)) continue;
    each(user, () => out.retired.push({ user, to: meta.retireHome(user) }));
  }
  for (const [user, account] of zone.accounts) {
    if (meta.homeAccount(user) === account && meta.tryStat(`${HOME_DIR}/${user}`)?.type === 'dir') continue;
    each(user, () => {
      meta.ensureHome(user, { account });
      out.made.push(user);
    });
  }
  return out;
}
