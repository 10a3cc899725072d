// Sessions for WebDAV clients' Basic credentials (docs/dcfs.md, "LAN access"). A mounted drive sends its password with
// every request; dfs logs in once per credentials and keeps that one session going with its refresh token for as long
// as verify-hub lets it live, rather than logging in again whenever the access token runs out, which would leave
// verify-hub a new week-long session every quarter of an hour for every mounted drive.
import { createHash } from 'node:crypto';

export interface BasicGrant {
  token: string;
  refreshToken: string;
  /** When `token` expires (ms). */
  expiresAt: number;
}

export interface BasicSessionDeps {
  login(user: string, password: string): Promise<BasicGrant>;
  /** Trades a refresh token (single use) for a new grant. */
  refresh(refreshToken: string): Promise<BasicGrant>;
  now?: () => number;
}

/** An access token is renewed this long before it expires, so that a request never carries one lapsing on its way. */
export const RENEW_BEFORE_MS = 60_000;
const MAX_ENTRIES = 1000;

export class BasicSessions {
  /** Keyed by a hash of the credentials, so nothing here holds a password. A grant being fetched is shared by every
   * request that needs it: a client's parallel requests make one login, and a refresh token is presented once. */
  private readonly grants = new Map<string, Promise<BasicGrant>>();
  private readonly now: () => number;

  constructor(private readonly d: BasicSessionDeps) {
    this.now = d.now ?? Date.now;
  }

  /**
   * The session token for these credentials. `beforeLogin` runs only when a new login is needed and may throw to
   * refuse it (a rate limit); a failed login is not remembered, and a failed refresh falls back to a new login.
   */
  async token(user: string, password: string, beforeLogin: () => void): Promise<string> {
    const key = keyOf(user, password);
    let renewed = false;
    for (;;) {
      let pending = this.grants.get(key);
      const ours = !pending;
      if (!pending) {
        beforeLogin();
        pending = this.d.login(user, password);
        this.remember(key, pending);
      }
      let grant: BasicGrant;
      try {
        grant = await pending;
      } catch (err) {
        if (this.grants.get(key) === pending) this.grants.delete(key);
        if (ours) throw err;
        continue;
      }
      if (renewed || grant.expiresAt - RENEW_BEFORE_MS > this.now()) return grant.token;
      if (this.grants.get(key) === pending) this.remember(key, this.d.refresh(grant.refreshToken));
      renewed = true;
    }
  }

  /** Forgets the session of these credentials (its token was refused: a password changed, the user disabled). */
  drop(user: string, password: string): void {
    this.grants.delete(keyOf(user, password));
  }

  private remember(key: string, grant: Promise<BasicGrant>): void {
    if (!this.grants.has(key) && this.grants.size >= MAX_ENTRIES) this.grants.delete(this.grants.keys().next().value!);
    this.grants.set(key, grant);
    // A rejection is handled by whichever request awaits it; none may be left unhandled meanwhile.
    grant.catch(() => undefined);
  }
}

function keyOf(user: string, password: string): string {
  return createHash('sha256').update(`${user}:${password}`).digest('hex');
}
