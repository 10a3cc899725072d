// The signed-in session of one browser tab (docs/ui.md, "Sessions"): verify-hub's token pair, kept in
// sessionStorage so a reload keeps it and closing the tab ends it; never the password. The access token is renewed
// with the refresh token shortly before it expires, one refresh at a time: a refresh token works once, and
// presenting it twice makes verify-hub end the whole session as stolen. For the same reason a tab duplicated from a
// signed-in one (which copies sessionStorage) gives its copy up rather than share it.
import { jwtPayload } from '../lib/identity/base64url.ts';
import type { verifyHubApi } from '../lib/api/verify-hub.ts';
import type { Client } from '../lib/krpc/call.ts';
import { KrpcError } from '../lib/krpc/errors.ts';
import type { Result } from '../lib/krpc/service.ts';

type Tokens = Result<typeof verifyHubApi.methods.login_password>;
export type HubClient = Pick<Client<typeof verifyHubApi.methods>, 'login_nonce' | 'login_password' | 'refresh' | 'logout'>;

/** The app every session of the system UI is issued to (a trusted UI app in RBAC). */
export const UI_APP_ID = 'control-panel';

export const SESSION_STORAGE_KEY = 'buckyos.session';
const CHANNEL_NAME = 'buckyos.session';

/** How long a new tab listens for an older tab holding the same session before it may refresh. */
export const CLAIM_WINDOW_MS = 250;

export interface Session {
  token: string;
  refresh: string;
  sid: string;
  user: Tokens['user'];
  /** Local clock, milliseconds: renew from here on. Kept in local time, so a device clock that disagrees with the
   * zone's does not matter: only the token's lifetime is taken from the zone. */
  renewAt: number;
  /** Local clock, milliseconds: the refresh token is dead from here on. */
  endsAt: number;
}

/** Why there is no session any more, for the login page to say. */
export type EndReason = 'logout' | 'expired' | 'copied';

function claims(jwt: string): { iat: number; exp: number; sid: string } {
  const c = jwtPayload(jwt) as { iat?: unknown; exp?: unknown; sid?: unknown };
  if (typeof c.iat !== 'number' || typeof c.exp !== 'number' || typeof c.sid !== 'string') throw new Error('session token without iat, exp or sid');
  return { iat: c.iat, exp: c.exp, sid: c.sid };
}

/** Renew a quarter of the lifetime before the end, at most a minute before: early enough for a slow network. */
export function sessionFromTokens(t: Tokens, now: number): Session {
  const c = claims(t.session_token);
  const lifeMs = Math.max(0, (c.exp - c.iat) * 1000);
  const refreshLifeMs = Math.max(0, (t.refresh_expires_at - c.iat) * 1000);
  return {
    token: t.session_token,
    refresh: t.refresh_token,
    sid: c.sid,
    user: t.user,
    renewAt: now + lifeMs - Math.min(60_000, lifeMs / 4),
    endsAt: now + refreshLifeMs,
  };
}

function isSession(v: unknown): v is Session {
  const s = v as Partial<Session> | null;
  return (
    typeof s === 'object' && s !== null && typeof s.token === 'string' && typeof s.refresh === 'string' && typeof s.sid === 'string' &&
    typeof s.renewAt === 'number' && typeof s.endsAt === 'number' && typeof s.user?.name === 'string' && typeof s.user.role === 'string'
  );
}

type ChannelMessage = { type: 'hello' | 'mine'; sid: string };

export interface SessionStoreOptions {
  storage: Storage;
  /** verify-hub, anonymous (null) or with a token. */
  hub: (token: string | null) => HubClient;
  now?: () => number;
  /** Where tabs of this origin tell each other which session they hold; a BroadcastChannel by default. */
  channel?: BroadcastChannel | null;
}

export class SessionStore {
  private session: Session | null = null;
  private ended: EndReason | null = null;
  private readonly listeners = new Set<() => void>();
  private refreshing: Promise<Session | null> | null = null;
  private readonly claimed: Promise<void>;
  private readonly channel: BroadcastChannel | null;
  private readonly now: () => number;

  constructor(private readonly opts: SessionStoreOptions) {
    this.now = opts.now ?? Date.now;
    try {
      const raw = opts.storage.getItem(SESSION_STORAGE_KEY);
      const parsed: unknown = raw === null ? null : JSON.parse(raw);
      if (isSession(parsed) && parsed.endsAt > this.now()) this.session = parsed;
    } catch {
      // An unreadable copy is no session.
    }
    if (!this.session) opts.storage.removeItem(SESSION_STORAGE_KEY);
    this.channel = opts.channel !== undefined ? opts.channel : typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(CHANNEL_NAME);
    let inWindow = this.session !== null;
    this.channel?.addEventListener('message', (ev: MessageEvent<ChannelMessage>) => {
      const mine = this.session?.sid;
      if (!mine || ev.data?.sid !== mine) return;
      if (ev.data.type === 'hello') this.channel?.postMessage({ type: 'mine', sid: mine } satisfies ChannelMessage);
      // Another tab had this session first: it keeps it, and this copy goes without a word to the server. Two copies
      // opened together (a restored browser session) both go: better than both refreshing and tripping verify-hub's
      // reuse detection.
      else if (ev.data.type === 'mine' && inWindow) this.set(null, 'copied');
    });
    this.claimed = new Promise<void>((resolve) => {
      if (!inWindow) return resolve();
      this.channel?.postMessage({ type: 'hello', sid: this.session!.sid } satisfies ChannelMessage);
      setTimeout(() => {
        inWindow = false;
        resolve();
      }, CLAIM_WINDOW_MS);
    });
  }

  get(): Session | null {
    return this.session;
  }

  /** Why the last session ended, until the next sign-in. */
  endReason(): EndReason | null {
    return this.ended;
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private set(s: Session | null, reason: EndReason | null = null): void {
    this.session = s;
    this.ended = s ? null : reason;
    if (s) this.opts.storage.setItem(SESSION_STORAGE_KEY, JSON.stringify(s));
    else this.opts.storage.removeItem(SESSION_STORAGE_KEY);
    for (const fn of this.listeners) fn();
  }

  /** Throws the KrpcError verify-hub answered (the login page explains each code). */
  async login(username: string, password: string): Promise<Session> {
    const hub = this.opts.hub(null);
    const { nonce } = await hub.login_nonce({});
    const tokens = await hub.login_password({ username, password, nonce, app_id: UI_APP_ID });
    const s = sessionFromTokens(tokens, this.now());
    this.set(s);
    return s;
  }

  /** Ends the session here, and at verify-hub when it can be reached: its refresh token must not outlive it. */
  async logout(): Promise<void> {
    try {
      const token = await this.token();
      if (token) await this.opts.hub(token).logout({});
    } catch (e) {
      if (!(e instanceof KrpcError && e.code === 'TOKEN_EXPIRED')) return this.set(null, 'logout');
      // The clock said the token had time left; verify-hub disagreed. Renew and try once more.
      try {
        const again = await this.refresh();
        if (again) await this.opts.hub(again.token).logout({});
      } catch {
        // Ended here regardless; at verify-hub it ends when its refresh token expires.
      }
    }
    this.set(null, 'logout');
  }

  /** The access token for a call, renewed first when it is due; null without a session. */
  async token(): Promise<string | null> {
    const s = this.session;
    if (!s) return null;
    if (this.now() < s.renewAt) return s.token;
    return (await this.refresh())?.token ?? null;
  }

  /** Trades the refresh token for a new pair; concurrent callers share one trade. Null when the session is over. */
  refresh(): Promise<Session | null> {
    this.refreshing ??= this.renew().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async renew(): Promise<Session | null> {
    await this.claimed;
    const s = this.session;
    if (!s) return null;
    if (this.now() >= s.endsAt) {
      this.set(null, 'expired');
      return null;
    }
    try {
      const tokens = await this.opts.hub(null).refresh({ refresh_token: s.refresh });
      // Signed out (or in as someone else) while the trade was under way: the new pair is not this session's.
      if (this.session?.sid !== s.sid) return this.session;
      const next = sessionFromTokens(tokens, this.now());
      this.set(next);
      return next;
    } catch (e) {
      if (e instanceof KrpcError && (e.code === 'UNAUTHENTICATED' || e.code === 'INVALID_PARAMS')) {
        this.set(null, 'expired');
        return null;
      }
      // Unreachable or busy: the session stands, and the next call tries again.
      throw e;
    }
  }

  /** A service said the token is no good (revoked, its user disabled): the session is over. */
  expire(): void {
    if (this.session) this.set(null, 'expired');
  }
}
