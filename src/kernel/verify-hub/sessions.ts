// Login sessions in system-config: creation, refresh-token rotation with reuse detection, revocation and expiry.
// A refresh token is `<sid>.<secret>`; only its sha256 is stored. Rotation is a compare-and-swap on the session's
// revision, so of two refreshes presenting the same token exactly one can win; the other then finds its token among
// the used ones and ends the session, as any reuse does. Records live at `sessions/<user>/<id>` (the sid is
// `<user>:<id>`), so what concerns one user lists only that user's sessions.
import { createHash, randomBytes, randomUUID, timingSafeEqual, type KeyObject } from 'node:crypto';
import { KrpcError } from '../../lib/krpc/index.ts';
import { REFRESH_TOKEN_TTL_SEC, VERIFY_HUB_KID, signAccessToken } from '../../lib/identity/tokens.ts';
import { type KvStore, isKrpcCode, listAll } from './kv.ts';
import {
  KEYS, type LOGIN_KINDS, SID_RE, type SessionRecord, type Versioned, parseRecord, readRecord, sessionSchema, sidOfKey,
} from './records.ts';
import type { Clock } from '../../lib/rate-limiter.ts';

/** However often it is refreshed, a session ends this long after its login. */
export const MAX_SESSION_LIFETIME_SEC = 30 * 24 * 3600;
/** How many superseded refresh tokens are remembered for reuse detection (one per rotation). */
export const MAX_USED_HASHES = 32;
const CAS_ATTEMPTS = 8;

const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;

function newSessionId(user: string): string {
  return `${user}:${randomBytes(16).toString('base64url')}`;
}

function newRefreshToken(sid: string): string {
  return `${sid}.${randomBytes(32).toString('base64url')}`;
}

export function parseRefreshToken(token: string): { sid: string } | null {
  const dot = token.indexOf('.');
  if (dot < 0) return null;
  const sid = token.slice(0, dot);
  return SID_RE.test(sid) && SECRET_RE.test(token.slice(dot + 1)) ? { sid } : null;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

export interface NewSession {
  user: string;
  app: string;
  login: (typeof LOGIN_KINDS)[number];
  device?: string;
  /** See sessionSchema. */
  incarnation: number;
  epoch: number;
}

export interface RefreshGrant {
  sid: string;
  session: SessionRecord;
  refreshToken: string;
}

export type RefreshFailure = 'malformed' | 'unknown' | 'revoked' | 'expired' | 'reused' | 'inactive';

export type RefreshOutcome =
  | ({ ok: true } & RefreshGrant)
  | { ok: false; reason: RefreshFailure; sid?: string; session?: SessionRecord };

export interface StoredSession {
  sid: string;
  session: SessionRecord;
  revision: number;
}

export class SessionStore {
  constructor(
    private readonly kv: KvStore,
    private readonly now: Clock = Date.now,
  ) {}

  private nowSec(): number {
    return Math.floor(this.now() / 1000);
  }

  async create(s: NewSession): Promise<RefreshGrant> {
    const now = this.nowSec();
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const sid = newSessionId(s.user);
      const refreshToken = newRefreshToken(sid);
      const session: SessionRecord = {
        user: s.user,
        incarnation: s.incarnation,
        epoch: s.epoch,
        app: s.app,
        login: s.login,
        ...(s.device ? { device: s.device } : {}),
        created_at: now,
        expires_at: now + REFRESH_TOKEN_TTL_SEC,
        refresh_hash: hashToken(refreshToken),
        refresh_generation: 0,
        used_hashes: [],
        last_refresh_at: null,
        revoked: false,
      };
      try {
        await this.kv.set({ key: KEYS.session(sid), value: JSON.stringify(session), expect_revision: 0 });
        return { sid, session, refreshToken };
      } catch (e) {
        if (!isKrpcCode(e, 'CONFLICT')) throw e;
      }
    }
    throw new KrpcError('INTERNAL', 'could not allocate a session id');
  }

  get(sid: string): Promise<Versioned<SessionRecord> | null> {
    if (!SID_RE.test(sid)) return Promise.resolve(null);
    return readRecord(this.kv, KEYS.session(sid), sessionSchema);
  }

  /** Trades a refresh token for a new one. `ended` (why the session is over by its account's records, or null) is
   * asked before anything is written. */
  async refresh(token: string, ended: (s: SessionRecord) => Promise<RefreshFailure | null>): Promise<RefreshOutcome> {
    const parsed = parseRefreshToken(token);
    if (!parsed) return { ok: false, reason: 'malformed' };
    const { sid } = parsed;
    const presented = hashToken(token);
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const cur = await this.get(sid);
      if (!cur) return { ok: false, reason: 'unknown' };
      const s = cur.value;
      if (s.revoked) return { ok: false, reason: 'revoked', sid, session: s };
      if (!sameHash(presented, s.refresh_hash)) {
        if (s.used_hashes.some((h) => sameHash(h, presented))) {
          await this.revoke(sid, 'refresh_token_reuse');
          return { ok: false, reason: 'reused', sid, session: s };
        }
        // A token never issued for this session: the sid alone (visible in session tokens) must not end it.
        return { ok: false, reason: 'unknown' };
      }
      const now = this.nowSec();
      if (s.expires_at <= now) return { ok: false, reason: 'expired', sid, session: s };
      const over = await ended(s);
      if (over) return { ok: false, reason: over, sid, session: s };
      const refreshToken = newRefreshToken(sid);
      const next: SessionRecord = {
        ...s,
        refresh_hash: hashToken(refreshToken),
        refresh_generation: s.refresh_generation + 1,
        used_hashes: [...s.used_hashes, s.refresh_hash].slice(-MAX_USED_HASHES),
        last_refresh_at: now,
        expires_at: Math.min(now + REFRESH_TOKEN_TTL_SEC, s.created_at + MAX_SESSION_LIFETIME_SEC),
      };
      try {
        await this.kv.set({ key: KEYS.session(sid), value: JSON.stringify(next), expect_revision: cur.revision });
        return { ok: true, sid, session: next, refreshToken };
      } catch (e) {
        if (!isKrpcCode(e, 'CONFLICT')) throw e;
      }
    }
    throw new KrpcError('UNAVAILABLE', 'the session changed too often to refresh; try again');
  }

  /** Read-modify-write of one session under compare-and-swap; `change` answers null to leave it as it is. False when
   * there is no such session. */
  private async update(sid: string, change: (s: SessionRecord) => SessionRecord | null, what: string): Promise<boolean> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const cur = await this.get(sid);
      if (!cur) return false;
      const next = change(cur.value);
      if (!next) return true;
      try {
        await this.kv.set({ key: KEYS.session(sid), value: JSON.stringify(next), expect_revision: cur.revision });
        return true;
      } catch (e) {
        if (!isKrpcCode(e, 'CONFLICT')) throw e;
      }
    }
    throw new KrpcError('UNAVAILABLE', `session ${sid} changed too often to ${what}; try again`);
  }

  /** Marks a session revoked. False when there is no such session. */
  revoke(sid: string, reason: string): Promise<boolean> {
    return this.update(sid, (s) => (s.revoked ? null : { ...s, revoked: true, revoked_reason: reason }), 'revoke');
  }

  /** Moves a session into the user's new epoch: the one session that survives the change that raised it. */
  keepInEpoch(sid: string, epoch: number): Promise<boolean> {
    return this.update(sid, (s) => ({ ...s, epoch }), 'update');
  }

  /** Every well-formed session record of `user`, or of everyone, revoked ones included. */
  async list(user?: string): Promise<StoredSession[]> {
    const entries = await listAll(this.kv, user === undefined ? KEYS.sessionsPrefix : KEYS.userSessionsPrefix(user));
    const out: StoredSession[] = [];
    for (const e of entries) {
      const sid = sidOfKey(e.key);
      if (!sid) continue;
      try {
        out.push({ sid, session: parseRecord(e.key, e.value, sessionSchema), revision: e.revision });
      } catch {
        // Unusable anyway: a refresh against it fails. sweep() removes it.
      }
    }
    return out;
  }

  /** Marks every live session of `user` except `exceptSid` revoked; answers how many. What ends them is the epoch
   * raised in the user's credential record; the marks tell session_list why. */
  async revokeUser(user: string, reason: string, exceptSid?: string): Promise<number> {
    let n = 0;
    for (const { sid, session } of await this.list(user)) {
      if (session.revoked || sid === exceptSid) continue;
      if (await this.revoke(sid, reason)) n++;
    }
    return n;
  }

  /** Deletes sessions whose refresh token has expired, and records too malformed to use (including those of an
   * older key layout). Answers how many. */
  async sweep(): Promise<number> {
    const now = this.nowSec();
    let n = 0;
    for (const e of await listAll(this.kv, KEYS.sessionsPrefix)) {
      let expired = true;
      try {
        expired = sidOfKey(e.key) === null || parseRecord(e.key, e.value, sessionSchema).expires_at <= now;
      } catch {
        // A record that does not parse can never be refreshed again.
      }
      if (!expired) continue;
      try {
        // Only the revision that was judged expired: a refresh that raced in keeps its session.
        await this.kv.delete({ key: e.key, expect_revision: e.revision });
        n++;
      } catch (err) {
        if (!isKrpcCode(err, 'CONFLICT') && !isKrpcCode(err, 'NOT_FOUND')) throw err;
      }
    }
    return n;
  }
}

/** Signs a session or sudo access token bound to a session. */
export async function signUserToken(
  key: KeyObject,
  typ: 'session' | 'sudo',
  user: string,
  app: string,
  sid: string,
  ttlSec: number,
): Promise<{ token: string; expiresAt: number }> {
  const token = await signAccessToken({ typ, sub: user, app, sid, jti: randomUUID() }, key, ttlSec, VERIFY_HUB_KID);
  return { token, expiresAt: Math.floor(Date.now() / 1000) + ttlSec };
}
