// verify-hub's logic behind its kRPC methods: logins, refresh, sudo, and user and session management. State lives in
// system-config (through KvStore) so that sessions survive restarts; only rate limits and nonces are in memory.
// docs/verify-hub.md describes the flows and the rules enforced here.
import { type KeyObject, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type UserRole, verifyHubApi } from '../../lib/api/verify-hub.ts';
import { userName } from '../../lib/identity/documents.ts';
import { JwtError, peekJwt, verifyJwt } from '../../lib/identity/jwt.ts';
import { KERNEL_SERVICES, SESSION_TOKEN_TTL_SEC, SUDO_TOKEN_TTL_SEC } from '../../lib/identity/tokens.ts';
import { type CallContext, type Handlers, KrpcError, type Principal } from '../../lib/krpc/index.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { DEFAULT_POLICY } from '../../lib/rbac/default-policy.ts';
import { type AccessRequest, accessRequest, parsePolicyCsv, requesterText } from '../../lib/rbac/enforcer.ts';
import { policyNames } from '../../lib/rbac/policy-text.ts';
import { type KvStore, type KvTxOp, KV_TX_MAX_OPS, isKrpcCode, listAll } from './kv.ts';
import { type Clock, RateLimiter } from '../../lib/rate-limiter.ts';
import { NonceStore, PhantomLockout } from './limits.ts';
import { type PasswordHash, hashPassword, needsRehash, passwordStrengthProblem, verifyAgainstDummy, verifyPassword } from './password.ts';
import {
  type Credential, KEYS, SETTINGS_KEY_RE, type SessionRecord, type UserSettings, type Versioned, credentialSchema,
  parseRecord, readRecord, userSettingsSchema,
} from './records.ts';
import { type NewSession, type RefreshFailure, SessionStore, signUserToken } from './sessions.ts';

export const NONCE_TTL_MS = 60_000;
/** A login JWT may live at most this long, so a leaked one is soon worthless even before its nonce is spent. */
export const MAX_LOGIN_JWT_TTL_SEC = 5 * 60;
export const LOCKOUT = { maxFailures: 5, lockMs: 15 * 60_000 };
export const LOGIN_RATE = { capacity: 10, refillMs: 6_000 };
/** Every login needs a nonce, so this is above LOGIN_RATE, with room for nonces a client fetched and never used. */
export const NONCE_RATE = { capacity: 20, refillMs: 3_000 };
const CAS_ATTEMPTS = 8;

export type AuditType = 'login' | 'login_failed' | 'logout' | 'user_change' | 'device_change' | 'deletion' | 'permission_change';

export interface AuditEvent {
  type: AuditType;
  /** ISO time. */
  at: string;
  /** What happened, within the type: `password`, `owner_key`, `sudo`, `create`, `set_role`, `revoke`, ... */
  action: string;
  /** Who acted; null for anonymous login attempts. */
  actor: string | null;
  /** The account acted on (for logins, the account named). */
  target?: string;
  app?: string;
  ip?: string;
  sid?: string;
  /** Why a login failed, or what changed (`user -> admin`). */
  reason?: string;
}

export type AuditFn = (event: AuditEvent) => void | Promise<void>;
export type CheckFn = (req: AccessRequest) => boolean | Promise<boolean>;

export interface VerifyHubOptions {
  kv: KvStore;
  /** The verify-hub private key (etc/verify_hub_key.pem); the zone boot config names its public half. */
  signingKey: KeyObject;
  owner: { name: string; key: KeyObject };
  /** A device of this zone by did:dev (its public key, and its role from its signed document); undefined for any
   * other device. */
  device: (did: string) => Promise<{ key: KeyObject; role: string } | undefined>;
  /** Signature and expiry check of access tokens (the runtime's verifier). */
  verifyToken: (token: string) => Promise<Principal>;
  check: CheckFn;
  audit: AuditFn;
  /** Called after a user's records are gone, so the caller can drop every RBAC grant at once. */
  onUserDeleted?: (name: string) => void | Promise<void>;
  log?: Logger;
  now?: Clock;
}

const loginClaims = z.object({
  typ: z.literal('login'),
  sub: userName,
  nonce: z.string().min(1).max(128),
  exp: z.number().int(),
});

type UserPrincipal = Principal & { kind: 'session' | 'sudo'; sessionId: string };

const WRONG_CREDENTIALS = 'wrong user name or password';

const BASE_POLICY = parsePolicyCsv(DEFAULT_POLICY, 'base policy');

/** Kernel services and every subject of the base RBAC policy's user and app sides (roles, services, trusted apps):
 * RBAC checks a user by name, so a user called `scheduler` would be checked as the kernel. As app ids of a login they
 * are refused too: a session for app `system-config` would pass RBAC's app side as the kernel. Device roles are a
 * namespace of their own, which no user or app name reaches. */
const RESERVED_NAMES: ReadonlySet<string> = new Set([...KERNEL_SERVICES, ...policyNames(BASE_POLICY)]);

/** The system UI and the CLI (RBAC's trusted-ui), which any user may log in with. Until apps get tokens of their
 * own, any other app id must be an app installed for the user logging in. */
const TRUSTED_UI_APPS: ReadonlySet<string> = new Set(
  BASE_POLICY.filter((r) => r.ptype === 'g2' && r.fields[1] === 'trusted-ui').map((r) => r.fields[0]),
);

/** What the account records say about sessions; null when the user does not exist. */
interface Account {
  state: UserSettings['state'];
  incarnation: number;
  epoch: number;
}

/** Why a session with a live record is over all the same, by its account's records; null while it may go on. */
function endedByAccount(a: Account | null, s: SessionRecord): RefreshFailure | null {
  if (!a || a.state !== 'active') return 'inactive';
  return a.incarnation !== s.incarnation || a.epoch !== s.epoch ? 'revoked' : null;
}

export class VerifyHub {
  private readonly kv: KvStore;
  private readonly sessions: SessionStore;
  private readonly nonces: NonceStore;
  private readonly nonceLimiter: RateLimiter;
  private readonly ipLimiter: RateLimiter;
  private readonly userLimiter: RateLimiter;
  private readonly phantom: PhantomLockout;
  private readonly now: Clock;

  constructor(private readonly opts: VerifyHubOptions) {
    this.kv = opts.kv;
    this.now = opts.now ?? Date.now;
    this.sessions = new SessionStore(opts.kv, this.now);
    this.nonces = new NonceStore({ ttlMs: NONCE_TTL_MS, now: this.now });
    this.nonceLimiter = new RateLimiter({ ...NONCE_RATE, now: this.now });
    this.ipLimiter = new RateLimiter({ ...LOGIN_RATE, now: this.now });
    this.userLimiter = new RateLimiter({ ...LOGIN_RATE, now: this.now });
    this.phantom = new PhantomLockout(LOCKOUT, this.now);
  }

  private nowSec(): number {
    return Math.floor(this.now() / 1000);
  }

  emit(e: Omit<AuditEvent, 'at'>): void {
    const event: AuditEvent = { at: new Date(this.now()).toISOString(), ...e };
    const fail = (err: unknown) => this.opts.log?.error({ err: (err as Error).message, event }, 'audit sink failed');
    try {
      const r = this.opts.audit(event);
      if (r) r.catch(fail);
    } catch (err) {
      fail(err);
    }
  }

  // ---- authentication of calls to verify-hub itself -----------------------------------------------------------

  /** Like every service's verifier, and also refuses tokens of sessions that were revoked or deleted, or that their
   * account's records have ended. */
  authenticate = async (token: string): Promise<Principal> => {
    const p = await this.opts.verifyToken(token);
    if (p.kind === 'service') return p;
    if (!p.sessionId) throw new KrpcError('UNAUTHENTICATED', 'token names no session');
    const s = await this.sessions.get(p.sessionId);
    if (!s || s.value.revoked || s.value.user !== p.userId || endedByAccount(await this.account(s.value.user), s.value)) {
      throw new KrpcError('UNAUTHENTICATED', 'the session of this token has ended; log in again');
    }
    return p;
  };

  // ---- records -------------------------------------------------------------------------------------------------

  private settings(name: string): Promise<Versioned<UserSettings> | null> {
    return readRecord(this.kv, KEYS.settings(name), userSettingsSchema);
  }

  private credential(name: string): Promise<Versioned<Credential> | null> {
    return readRecord(this.kv, KEYS.credentials(name), credentialSchema);
  }

  private isOwner(name: string): boolean {
    return name === this.opts.owner.name;
  }

  /** The owner is admin whatever the record says: no edit of a record can lock the owner out of the zone. */
  private roleOf(s: UserSettings): UserRole {
    return this.isOwner(s.name) ? 'admin' : s.role;
  }

  private publicUser(s: UserSettings) {
    return { name: s.name, role: this.roleOf(s), state: s.state, created_at: s.created_at, owner: this.isOwner(s.name) };
  }

  /** Read-modify-write of a user's settings under compare-and-swap. */
  private async updateSettings(name: string, change: (s: UserSettings) => UserSettings): Promise<{ before: UserSettings; after: UserSettings }> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const cur = await this.settings(name);
      if (!cur) throw new KrpcError('NOT_FOUND', `user "${name}" does not exist`);
      const after = change(cur.value);
      try {
        await this.kv.set({ key: KEYS.settings(name), value: JSON.stringify(after), expect_revision: cur.revision });
        return { before: cur.value, after };
      } catch (e) {
        if (!isKrpcCode(e, 'CONFLICT')) throw e;
      }
    }
    throw new KrpcError('UNAVAILABLE', `user "${name}" changed too often to update; try again`);
  }

  /** Read-modify-write of a credential record under compare-and-swap; `change` gets null when there is none yet and
   * answers null to write nothing. Answers what was written. */
  private async writeCredential(name: string, change: (c: Credential | null) => Credential | null): Promise<Credential | null> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const cur = await this.credential(name);
      const next = change(cur?.value ?? null);
      if (!next) return null;
      try {
        await this.kv.set({ key: KEYS.credentials(name), value: JSON.stringify(next), expect_revision: cur?.revision ?? 0 });
        return next;
      } catch (e) {
        if (!isKrpcCode(e, 'CONFLICT')) throw e;
      }
    }
    throw new KrpcError('UNAVAILABLE', `credentials of "${name}" changed too often to update; try again`);
  }

  private updateCredential(name: string, change: (c: Credential) => Credential): Promise<Credential | null> {
    return this.writeCredential(name, (c) => c && change(c));
  }

  private async account(name: string): Promise<Account | null> {
    const [s, c] = await Promise.all([this.settings(name), this.credential(name)]);
    return s && { state: s.value.state, incarnation: s.createRevision, epoch: c?.value.session_epoch ?? 0 };
  }

  // ---- the owner's first start ---------------------------------------------------------------------------------

  /**
   * Makes sure the owner has a user record, and imports the initial password hash activation left, unless the owner
   * already has credentials. Idempotent: every later start finds both and changes nothing. The caller deletes the
   * file once `ownerHasPassword()`: left on disk, it would bring the initial password back if the credential record
   * were ever lost.
   */
  async ensureOwner(initialPassword: PasswordHash | null): Promise<{ imported: boolean }> {
    const name = this.opts.owner.name;
    const settings: UserSettings = { name, role: 'admin', state: 'active', created_at: this.nowSec(), id: randomUUID() };
    try {
      await this.kv.set({ key: KEYS.settings(name), value: JSON.stringify(settings), expect_revision: 0 });
    } catch (e) {
      if (!isKrpcCode(e, 'CONFLICT')) throw e;
    }
    if (!initialPassword) return { imported: false };
    const cred: Credential = { ...initialPassword, failed_attempts: 0, locked_until: 0, updated_at: this.nowSec(), session_epoch: 0 };
    try {
      await this.kv.set({ key: KEYS.credentials(name), value: JSON.stringify(cred), expect_revision: 0 });
    } catch (e) {
      if (isKrpcCode(e, 'CONFLICT')) return { imported: false };
      throw e;
    }
    this.emit({ type: 'user_change', action: 'import_owner_password', actor: null, target: name });
    return { imported: true };
  }

  async ownerHasPassword(): Promise<boolean> {
    return (await this.credential(this.opts.owner.name)) !== null;
  }

  // ---- login ---------------------------------------------------------------------------------------------------

  private limitAddress(ip: string): void {
    const wait = this.ipLimiter.take(ip);
    if (wait > 0) {
      throw new KrpcError('RATE_LIMITED', `too many login attempts from this address; retry in ${Math.ceil(wait / 1000)} s`, { retry_after_ms: wait });
    }
  }

  private limitUser(name: string): void {
    const wait = this.userLimiter.take(name);
    if (wait > 0) {
      throw new KrpcError('RATE_LIMITED', `too many login attempts for this account; retry in ${Math.ceil(wait / 1000)} s`, { retry_after_ms: wait });
    }
  }

  private lockedError(name: string, untilMs: number): KrpcError {
    return new KrpcError(
      'RATE_LIMITED',
      `account "${name}" is locked after ${LOCKOUT.maxFailures} failed logins until ${new Date(untilMs).toISOString()}`,
      { locked_until: Math.ceil(untilMs / 1000) },
    );
  }

  private async recordFailure(name: string, known: boolean): Promise<void> {
    if (!known) {
      this.phantom.fail(name);
      return;
    }
    await this.updateCredential(name, (c) => {
      const failed = c.failed_attempts + 1;
      return failed >= LOCKOUT.maxFailures
        ? { ...c, failed_attempts: 0, locked_until: this.nowSec() + LOCKOUT.lockMs / 1000 }
        : { ...c, failed_attempts: failed };
    });
  }

  /**
   * Checks `password` for `name` with lockout and per-user rate limit. Unknown users cost the same scrypt work and
   * answer the same as a wrong password. Throws on failure; on success clears the failure count (and upgrades an
   * outdated hash) and answers the credential record that matched, whose session epoch a new session must carry:
   * read later, it could be the epoch of a password set since.
   */
  private async checkPassword(name: string, password: string, audit: { action: string; app?: string; ip?: string; wrong: string }): Promise<Credential> {
    this.limitUser(name);
    const cred = await this.credential(name);
    const lockedUntil = cred ? cred.value.locked_until * 1000 : this.phantom.lockedUntil(name);
    if (lockedUntil > this.now()) {
      this.emit({ type: 'login_failed', action: audit.action, actor: null, target: name, app: audit.app, ip: audit.ip, reason: 'locked' });
      throw this.lockedError(name, lockedUntil);
    }
    const ok = cred ? await verifyPassword(password, cred.value) : await verifyAgainstDummy(password);
    if (!cred || !ok) {
      await this.recordFailure(name, cred !== null);
      this.emit({ type: 'login_failed', action: audit.action, actor: null, target: name, app: audit.app, ip: audit.ip, reason: 'wrong_password' });
      throw new KrpcError('UNAUTHENTICATED', audit.wrong);
    }
    if (cred.value.failed_attempts > 0 || cred.value.locked_until > 0 || needsRehash(cred.value)) {
      const fresh = needsRehash(cred.value) ? await hashPassword(password) : null;
      await this.updateCredential(name, (c) => ({ ...c, ...(fresh ?? {}), failed_attempts: 0, locked_until: 0, updated_at: this.nowSec() }));
    }
    return cred.value;
  }

  private async issue(s: NewSession, role: UserRole, ip: string) {
    const grant = await this.sessions.create(s);
    const access = await signUserToken(this.opts.signingKey, 'session', s.user, s.app, grant.sid, SESSION_TOKEN_TTL_SEC);
    this.emit({ type: 'login', action: s.login, actor: s.user, target: s.user, app: s.app, ip, sid: grant.sid });
    return {
      session_token: access.token,
      refresh_token: grant.refreshToken,
      expires_at: access.expiresAt,
      refresh_expires_at: grant.session.expires_at,
      user: { name: s.user, role },
    };
  }

  /** For key logins, whose signer is trusted to know which accounts exist. */
  private async activeUserFor(name: string, app: string, ip: string, action: string): Promise<Versioned<UserSettings>> {
    const s = await this.settings(name);
    if (!s || s.value.state !== 'active') {
      this.emit({ type: 'login_failed', action, actor: null, target: name, app, ip, reason: s ? 'disabled' : 'no_such_user' });
      throw s ? new KrpcError('PERMISSION_DENIED', `account "${name}" is disabled`) : new KrpcError('UNAUTHENTICATED', `user "${name}" does not exist`);
    }
    return s;
  }

  /** Refuses, before anything else of a login, an app id that names the system rather than an app. */
  private appIdAllowed(app: string): void {
    if (RESERVED_NAMES.has(app) && !TRUSTED_UI_APPS.has(app)) {
      throw new KrpcError(
        'INVALID_PARAMS',
        `app id "${app}" is a system service or role, not an app; log in with ${[...TRUSTED_UI_APPS].join(' or ')}, or an app installed for you`,
        { issues: [{ path: 'params.app_id', message: 'reserved for the system' }] },
      );
    }
  }

  /** Whether `app` may act for `user`: the trusted UI, or an app installed for them (users/<u>/apps/<app>/spec). */
  private async installedFor(user: string, app: string): Promise<boolean> {
    return TRUSTED_UI_APPS.has(app) || (await this.kv.get({ key: KEYS.appSpec(user, app) })).value !== null;
  }

  /** Once the user is known: an app other than the trusted UI must be installed for them. */
  private async appInstalledFor(user: string, app: string, audit: { action: string; ip: string }): Promise<void> {
    if (await this.installedFor(user, app)) return;
    this.emit({ type: 'login_failed', action: audit.action, actor: null, target: user, app, ip: audit.ip, reason: 'app_not_installed' });
    throw new KrpcError('PERMISSION_DENIED', `app "${app}" is not installed for user "${user}"`);
  }

  private async loginPassword(p: { username: string; password: string; nonce: string; app_id: string }, ctx: CallContext) {
    const ip = ctx.remoteAddress;
    this.limitAddress(ip);
    this.appIdAllowed(p.app_id);
    if (!this.nonces.consume(p.nonce)) {
      throw new KrpcError('UNAUTHENTICATED', 'login nonce is unknown, already used or expired; ask login_nonce for a new one');
    }
    const cred = await this.checkPassword(p.username, p.password, { action: 'password', app: p.app_id, ip, wrong: WRONG_CREDENTIALS });
    const s = await this.settings(p.username);
    // Credentials whose user record is gone are as good as no account.
    if (!s) throw new KrpcError('UNAUTHENTICATED', WRONG_CREDENTIALS);
    // Only someone who knows the password learns that the account is disabled.
    if (s.value.state !== 'active') {
      this.emit({ type: 'login_failed', action: 'password', actor: null, target: p.username, app: p.app_id, ip, reason: 'disabled' });
      throw new KrpcError('PERMISSION_DENIED', `account "${p.username}" is disabled`);
    }
    await this.appInstalledFor(p.username, p.app_id, { action: 'password', ip });
    return this.issue(
      { user: s.value.name, app: p.app_id, login: 'password', incarnation: s.createRevision, epoch: cred.session_epoch },
      this.roleOf(s.value),
      ip,
    );
  }

  private async loginJwt(p: { jwt: string; app_id: string }, ctx: CallContext) {
    const ip = ctx.remoteAddress;
    this.limitAddress(ip);
    this.appIdAllowed(p.app_id);
    let kid: string | undefined;
    try {
      kid = peekJwt(p.jwt).kid;
    } catch {
      throw new KrpcError('UNAUTHENTICATED', 'login JWT is malformed');
    }
    const isDevice = kid?.startsWith('did:dev:') ?? false;
    const device = isDevice ? await this.opts.device(kid!) : undefined;
    const key = isDevice ? device?.key : this.opts.owner.key;
    const login = isDevice ? 'device_key' : 'owner_key';
    if (!key) {
      this.emit({ type: 'login_failed', action: login, actor: null, app: p.app_id, ip, reason: 'unknown_device' });
      throw new KrpcError('UNAUTHENTICATED', 'login JWT is signed by a device that is not part of this zone');
    }
    // A session is signed by verify-hub and carries no device, so RBAC's device side could not bound what a storage,
    // portable or gateway device did with one: any user, the owner included, would be that device's to act as.
    if (device && device.role !== 'core') {
      this.emit({ type: 'login_failed', action: login, actor: null, app: p.app_id, ip, reason: 'device_not_core' });
      throw new KrpcError('PERMISSION_DENIED', `login JWT is signed by a ${device.role} device: only a core device's key logs a user in; elsewhere log in with a password`);
    }
    let payload: Record<string, unknown>;
    try {
      payload = await verifyJwt(p.jwt, key);
    } catch (e) {
      const expired = e instanceof JwtError && e.reason === 'expired';
      this.emit({ type: 'login_failed', action: login, actor: null, app: p.app_id, ip, reason: expired ? 'expired' : 'bad_signature' });
      throw new KrpcError('UNAUTHENTICATED', expired ? 'login JWT has expired; sign a new one' : `login JWT is not signed by the ${isDevice ? 'device' : 'owner'} key`);
    }
    const claims = loginClaims.safeParse(payload);
    if (!claims.success) throw new KrpcError('UNAUTHENTICATED', 'login JWT claims must be {typ: "login", sub, nonce, exp}');
    const c = claims.data;
    if (c.exp - this.nowSec() > MAX_LOGIN_JWT_TTL_SEC) {
      throw new KrpcError('UNAUTHENTICATED', `login JWT must expire within ${MAX_LOGIN_JWT_TTL_SEC} seconds`);
    }
    if (!this.nonces.consume(c.nonce)) {
      throw new KrpcError('UNAUTHENTICATED', 'login nonce is unknown, already used or expired; ask login_nonce for a new one');
    }
    if (!isDevice && !this.isOwner(c.sub)) {
      this.emit({ type: 'login_failed', action: login, actor: null, target: c.sub, app: p.app_id, ip, reason: 'owner_key_for_other_user' });
      throw new KrpcError('UNAUTHENTICATED', 'the owner key logs in only the owner');
    }
    // The epoch before the settings, the reverse of the order disabling writes them: a login that overlaps a disable
    // either finds the account disabled or carries the epoch the disable then leaves behind.
    const epoch = (await this.credential(c.sub))?.value.session_epoch ?? 0;
    const user = await this.activeUserFor(c.sub, p.app_id, ip, login);
    await this.appInstalledFor(c.sub, p.app_id, { action: login, ip });
    return this.issue(
      { user: user.value.name, app: p.app_id, login, ...(isDevice ? { device: kid } : {}), incarnation: user.createRevision, epoch },
      this.roleOf(user.value),
      ip,
    );
  }

  private refreshFailure(reason: RefreshFailure): KrpcError {
    switch (reason) {
      case 'reused':
        return new KrpcError('UNAUTHENTICATED', 'refresh token was already used; the session has been revoked, log in again');
      case 'revoked':
        return new KrpcError('UNAUTHENTICATED', 'the session has been revoked; log in again');
      case 'expired':
        return new KrpcError('UNAUTHENTICATED', 'the session has expired; log in again');
      case 'inactive':
        return new KrpcError('PERMISSION_DENIED', 'the account is disabled or deleted');
      default:
        return new KrpcError('UNAUTHENTICATED', 'refresh token is not valid');
    }
  }

  private async refresh(p: { refresh_token: string }, ctx: CallContext) {
    const r = await this.sessions.refresh(p.refresh_token, async (s) => {
      // A session opened with a device key ends with that device: once it is removed, or is no longer a core device,
      // its sessions cannot refresh.
      if (s.device !== undefined && (await this.opts.device(s.device))?.role !== 'core') return 'revoked';
      // An app uninstalled for the user ends its sessions there, as a login would now be refused.
      if (!(await this.installedFor(s.user, s.app))) return 'revoked';
      return endedByAccount(await this.account(s.user), s);
    });
    if (!r.ok) {
      if (r.reason === 'reused') {
        this.emit({ type: 'login_failed', action: 'refresh', actor: null, target: r.session?.user, app: r.session?.app, ip: ctx.remoteAddress, sid: r.sid, reason: 'refresh_token_reuse' });
      }
      throw this.refreshFailure(r.reason);
    }
    const s = r.session;
    const settings = await this.settings(s.user);
    if (!settings) throw this.refreshFailure('inactive');
    const access = await signUserToken(this.opts.signingKey, 'session', s.user, s.app, r.sid, SESSION_TOKEN_TTL_SEC);
    return {
      session_token: access.token,
      refresh_token: r.refreshToken,
      expires_at: access.expiresAt,
      refresh_expires_at: s.expires_at,
      user: { name: s.user, role: this.roleOf(settings.value) },
    };
  }

  // ---- authorisation of management calls -----------------------------------------------------------------------

  private userPrincipal(ctx: CallContext): UserPrincipal {
    const p = ctx.principal!;
    if (p.kind === 'service' || !p.sessionId) {
      throw new KrpcError('PERMISSION_DENIED', 'this needs a user session, not a service token');
    }
    return p as UserPrincipal;
  }

  private async callerRole(p: Principal): Promise<UserRole> {
    const s = await this.settings(p.userId);
    if (!s || s.value.state !== 'active') throw new KrpcError('UNAUTHENTICATED', 'the account of this token is disabled or deleted');
    return this.roleOf(s.value);
  }

  private async requireCheck(p: Principal, resource: string, action: string): Promise<void> {
    if (!(await this.opts.check(accessRequest(p, resource, action)))) {
      throw new KrpcError('PERMISSION_DENIED', `${requesterText(p)} may not ${action} ${resource}`);
    }
  }

  /**
   * An admin acting on another account: role rule, then RBAC, then (for dangerous actions) a sudo token. A kernel
   * service token (root on a zone device, such as the local `buckyos` CLI) passes on RBAC alone: it proved a device
   * key, which outranks a password, and could write the records in system-config directly anyway.
   */
  async requireAdmin(ctx: CallContext, resource: string, action: string, sudo: boolean): Promise<Principal> {
    const svc = ctx.principal!;
    if (svc.kind === 'service') {
      await this.requireCheck(svc, resource, action);
      return svc;
    }
    const p = this.userPrincipal(ctx);
    if ((await this.callerRole(p)) !== 'admin') throw new KrpcError('PERMISSION_DENIED', 'only admins manage other users');
    await this.requireCheck(p, resource, action);
    if (sudo && p.kind !== 'sudo') {
      throw new KrpcError('SUDO_REQUIRED', `${action} on ${resource} is a dangerous action: call verify-hub.sudo with your password and use the sudo token`);
    }
    return p;
  }

  private protectOwner(name: string, what: string): void {
    if (this.isOwner(name)) throw new KrpcError('PERMISSION_DENIED', `the zone owner cannot be ${what}`);
  }

  private strongPassword(password: string, name: string): void {
    const problem = passwordStrengthProblem(password, name);
    if (problem) throw new KrpcError('INVALID_PARAMS', problem, { issues: [{ path: 'params.password', message: problem }] });
  }

  // ---- user management -----------------------------------------------------------------------------------------

  private async userCreate(p: { name: string; password: string; role: UserRole }, ctx: CallContext) {
    const actor = await this.requireAdmin(ctx, `obj://user/${p.name}`, 'create', p.role === 'admin');
    if (RESERVED_NAMES.has(p.name)) {
      throw new KrpcError('INVALID_PARAMS', `"${p.name}" is reserved for a system service or role; choose another user name`);
    }
    this.strongPassword(p.password, p.name);
    const hash = await hashPassword(p.password);
    const now = this.nowSec();
    const settings: UserSettings = { name: p.name, role: p.role, state: 'active', created_at: now, id: randomUUID() };
    const cred: Credential = { ...hash, failed_attempts: 0, locked_until: 0, updated_at: now, session_epoch: 0 };
    const r = await this.kv.exec_tx({
      compares: [
        { key: KEYS.settings(p.name), revision: 0 },
        { key: KEYS.credentials(p.name), revision: 0 },
      ],
      ops: [
        { op: 'put', key: KEYS.settings(p.name), value: JSON.stringify(settings) },
        { op: 'put', key: KEYS.credentials(p.name), value: JSON.stringify(cred) },
      ],
    });
    if (!r.succeeded) throw new KrpcError('ALREADY_EXISTS', `user "${p.name}" already exists`);
    this.emit({ type: 'user_change', action: 'create', actor: actor.userId, target: p.name, app: actor.appId, reason: `role ${p.role}` });
    return this.publicUser(settings);
  }

  private async userList(ctx: CallContext) {
    const p = ctx.principal!;
    const all = p.kind === 'service' || (await this.callerRole(p)) === 'admin';
    // Every account is the app side's business too: an installed app holding an admin's session may not list them.
    // `*` names no user: it is the resource of all of them.
    if (all) await this.requireCheck(p, 'obj://user/*', 'read');
    // users/ also holds every user's app data: list names only, then read the settings records.
    const keys = all
      ? (await listAll(this.kv, KEYS.usersPrefix, { keysOnly: true })).map((e) => e.key).filter((k) => SETTINGS_KEY_RE.test(k))
      : [KEYS.settings(p.userId)];
    const users = [];
    for (const e of await Promise.all(keys.map((key) => this.kv.get({ key }).then((r) => ({ key, value: r.value }))))) {
      if (e.value === null) continue;
      try {
        users.push(this.publicUser(parseRecord(e.key, e.value, userSettingsSchema)));
      } catch (err) {
        this.opts.log?.warn({ key: e.key, err: (err as Error).message }, 'skipping malformed user record');
      }
    }
    return { users };
  }

  private async userSetRole(p: { name: string; role: UserRole }, ctx: CallContext) {
    const actor = await this.requireAdmin(ctx, `obj://user/${p.name}`, 'write', true);
    this.protectOwner(p.name, 'given another role');
    const { before, after } = await this.updateSettings(p.name, (s) => ({ ...s, role: p.role }));
    this.emit({ type: 'permission_change', action: 'set_role', actor: actor.userId, target: p.name, app: actor.appId, reason: `${before.role} -> ${after.role}` });
    return this.publicUser(after);
  }

  private async userSetPassword(p: { name: string; old_password?: string; new_password: string }, ctx: CallContext) {
    const caller = ctx.principal!;
    const self = caller.kind !== 'service' && caller.userId === p.name;
    const resource = `obj://user/${p.name}/password`;
    if (self) {
      await this.callerRole(caller);
      await this.requireCheck(caller, resource, 'write');
      // An account that never had a password (the owner before activation left one, a key login) sets its first
      // one on the strength of its session alone.
      if (caller.kind !== 'sudo' && (await this.credential(p.name))) {
        if (p.old_password === undefined) throw new KrpcError('INVALID_PARAMS', 'changing your own password needs old_password (or a sudo token)');
        await this.checkPassword(p.name, p.old_password, { action: 'password_change', app: caller.appId, ip: ctx.remoteAddress, wrong: 'old password is wrong' });
      }
    } else {
      await this.requireAdmin(ctx, resource, 'write', true);
      // Another admin could otherwise take the zone from its owner. Root on a zone device (a service token) may: it
      // is how a locked-out owner gets back in.
      if (caller.kind !== 'service') this.protectOwner(p.name, 'given a new password by anyone else');
    }
    this.strongPassword(p.new_password, p.name);
    if (!(await this.settings(p.name))) throw new KrpcError('NOT_FOUND', `user "${p.name}" does not exist`);
    const hash = await hashPassword(p.new_password);
    // The new epoch ends every session of the old password at once; the records are marked below only for display.
    const cred = (await this.writeCredential(p.name, (c) => ({
      ...hash, failed_attempts: 0, locked_until: 0, updated_at: this.nowSec(), session_epoch: (c?.session_epoch ?? 0) + 1,
    })))!;
    // Whoever knew the old password may hold a session; only the one making the change survives it.
    if (self) await this.sessions.keepInEpoch(caller.sessionId!, cred.session_epoch);
    const revoked = await this.sessions.revokeUser(p.name, 'password_changed', self ? caller.sessionId : undefined);
    this.emit({ type: 'user_change', action: self ? 'change_password' : 'reset_password', actor: caller.userId, target: p.name, app: caller.appId });
    return { revoked_sessions: revoked };
  }

  private async userSetState(p: { name: string }, state: 'active' | 'disabled', ctx: CallContext) {
    const actor = await this.requireAdmin(ctx, `obj://user/${p.name}`, 'write', false);
    if (state === 'disabled') {
      this.protectOwner(p.name, 'disabled');
      if (p.name === actor.userId) throw new KrpcError('FAILED_PRECONDITION', 'you cannot disable your own account');
    }
    const { after } = await this.updateSettings(p.name, (s) => ({ ...s, state }));
    if (state === 'disabled') {
      // After the settings, so that a login overlapping this either sees the account disabled or takes the old epoch
      // (see loginJwt). Enabling the account again does not bring these sessions back.
      await this.updateCredential(p.name, (c) => ({ ...c, session_epoch: c.session_epoch + 1 }));
      await this.sessions.revokeUser(p.name, 'user_disabled');
    }
    this.emit({ type: 'user_change', action: state === 'disabled' ? 'disable' : 'enable', actor: actor.userId, target: p.name, app: actor.appId });
    return this.publicUser(after);
  }

  private async userDelete(p: { name: string }, ctx: CallContext) {
    const actor = await this.requireAdmin(ctx, `obj://user/${p.name}`, 'delete', true);
    this.protectOwner(p.name, 'deleted');
    if (p.name === actor.userId) throw new KrpcError('FAILED_PRECONDITION', 'you cannot delete your own account');
    const settings = await this.kv.get({ key: KEYS.settings(p.name) });
    const cred = await this.kv.get({ key: KEYS.credentials(p.name) });
    if (settings.value === null && cred.value === null) throw new KrpcError('NOT_FOUND', `user "${p.name}" does not exist`);
    const account = await this.account(p.name);
    const sessions = await this.sessions.list(p.name);
    const entries = await listAll(this.kv, KEYS.userPrefix(p.name), { keysOnly: true });
    // The account records go in the first transaction, so from that moment nobody can log in or refresh as this user
    // even if a later batch fails; a session record a failure leaves behind stays dead, bound to this incarnation of
    // the settings record.
    const keys = new Set<string>();
    if (settings.value !== null) keys.add(KEYS.settings(p.name));
    if (cred.value !== null) keys.add(KEYS.credentials(p.name));
    for (const s of sessions) keys.add(KEYS.session(s.sid));
    for (const e of entries) keys.add(e.key);
    const ops: KvTxOp[] = [...keys].map((key) => ({ op: 'delete', key }));
    for (let i = 0; i < ops.length; i += KV_TX_MAX_OPS) {
      await this.kv.exec_tx({ ops: ops.slice(i, i + KV_TX_MAX_OPS) });
    }
    this.emit({ type: 'deletion', action: 'delete_user', actor: actor.userId, target: p.name, app: actor.appId, reason: `${keys.size} keys, ${sessions.length} sessions` });
    await this.opts.onUserDeleted?.(p.name);
    return { deleted_keys: keys.size, revoked_sessions: sessions.filter((s) => !s.session.revoked && !endedByAccount(account, s.session)).length };
  }

  // ---- sessions ------------------------------------------------------------------------------------------------

  /** `ended`: over by its account's records although its own record does not say so. */
  private publicSession(sid: string, s: SessionRecord, ended: boolean, current?: string) {
    return {
      sid,
      user: s.user,
      app: s.app,
      login: s.login,
      created_at: s.created_at,
      expires_at: s.expires_at,
      last_refresh_at: s.last_refresh_at,
      revoked: s.revoked || ended,
      current: sid === current,
    };
  }

  private async sessionList(p: { user?: string; all: boolean }, ctx: CallContext) {
    const caller = ctx.principal!;
    // A service has no sessions of its own: without a user named it sees everyone's, as an admin asking for all.
    const all = p.all || (caller.kind === 'service' && p.user === undefined);
    const target = p.user ?? caller.userId;
    if ((all || target !== caller.userId) && caller.kind !== 'service' && (await this.callerRole(caller)) !== 'admin') {
      throw new KrpcError('PERMISSION_DENIED', 'only admins see other users\' sessions');
    }
    // And the app side: an installed app holding an admin's session may not see other accounts' sessions.
    if (all || target !== caller.userId) await this.requireCheck(caller, `obj://user/${all ? '*' : target}/sessions`, 'read');
    const accounts = new Map<string, Promise<Account | null>>();
    const accountOf = (user: string) => {
      let a = accounts.get(user);
      if (!a) accounts.set(user, (a = this.account(user)));
      return a;
    };
    const listed = await this.sessions.list(all ? undefined : target);
    const sessions = await Promise.all(
      listed.map(async (s) => this.publicSession(s.sid, s.session, endedByAccount(await accountOf(s.session.user), s.session) !== null, caller.sessionId)),
    );
    return { sessions };
  }

  private async sessionRevoke(p: { sid: string }, ctx: CallContext) {
    const caller = ctx.principal!;
    const s = await this.sessions.get(p.sid);
    if (!s) throw new KrpcError('NOT_FOUND', `no session ${p.sid}`);
    if (caller.kind === 'service' || s.value.user !== caller.userId) await this.requireAdmin(ctx, `obj://user/${s.value.user}/sessions`, 'write', false);
    // Ending one's own other sessions is the user's call through the system UI, not any installed app's: an app
    // holding one session could otherwise log its user out everywhere else. The caller's own session is a logout.
    else if (p.sid !== caller.sessionId) await this.requireCheck(caller, `obj://user/${caller.userId}/sessions`, 'write');
    await this.sessions.revoke(p.sid, caller.userId === s.value.user ? 'revoked_by_user' : `revoked_by_${caller.userId}`);
    this.emit({ type: 'logout', action: 'revoke', actor: caller.userId, target: s.value.user, app: caller.appId, sid: p.sid });
    return { sid: p.sid };
  }

  private async logout(ctx: CallContext) {
    const p = ctx.principal!;
    if (!p.sessionId) throw new KrpcError('FAILED_PRECONDITION', 'a service token has no session to log out of');
    await this.sessions.revoke(p.sessionId, 'logout');
    this.emit({ type: 'logout', action: 'logout', actor: p.userId, target: p.userId, app: p.appId, ip: ctx.remoteAddress, sid: p.sessionId });
    return { sid: p.sessionId };
  }

  private async sudo(p: { password: string }, ctx: CallContext) {
    const caller = this.userPrincipal(ctx);
    await this.callerRole(caller);
    await this.checkPassword(caller.userId, p.password, { action: 'sudo', app: caller.appId, ip: ctx.remoteAddress, wrong: 'wrong password' });
    const t = await signUserToken(this.opts.signingKey, 'sudo', caller.userId, caller.appId, caller.sessionId, SUDO_TOKEN_TTL_SEC);
    this.emit({ type: 'login', action: 'sudo', actor: caller.userId, target: caller.userId, app: caller.appId, ip: ctx.remoteAddress, sid: caller.sessionId });
    return { sudo_token: t.token, expires_at: t.expiresAt };
  }

  private async whoami(ctx: CallContext) {
    const p = ctx.principal!;
    const role = p.kind === 'service' ? null : await this.callerRole(p);
    return {
      user: p.userId,
      kind: p.kind,
      app: p.appId,
      role,
      owner: p.kind !== 'service' && this.isOwner(p.userId),
      session_id: p.sessionId ?? null,
      expires_at: p.expiresAt,
    };
  }

  /** Deletes expired sessions; run periodically. */
  /** Ends every session opened with a device's key (the device was removed from the zone); answers how many. */
  async revokeDeviceSessions(did: string): Promise<number> {
    let n = 0;
    for (const { sid, session } of await this.sessions.list()) {
      if (session.device === did && !session.revoked && (await this.sessions.revoke(sid, 'device_removed'))) n++;
    }
    return n;
  }

  sweep(): Promise<number> {
    return this.sessions.sweep();
  }

  /** The user and session methods; main.ts adds the device methods (devices.ts). */
  handlers(): Handlers<Omit<typeof verifyHubApi.methods, 'device_offer' | 'device_enrol' | 'device_list' | 'device_remove'>> {
    return {
      login_nonce: (_p, ctx) => {
        const wait = this.nonceLimiter.take(ctx.remoteAddress);
        if (wait > 0) {
          throw new KrpcError('RATE_LIMITED', `too many login nonces asked from this address; retry in ${Math.ceil(wait / 1000)} s`, { retry_after_ms: wait });
        }
        const n = this.nonces.issue(ctx.remoteAddress);
        return { nonce: n.nonce, expires_at: Math.floor(n.expiresAt / 1000) };
      },
      login_password: (p, ctx) => this.loginPassword(p, ctx),
      login_jwt: (p, ctx) => this.loginJwt(p, ctx),
      refresh: (p, ctx) => this.refresh(p, ctx),
      logout: (_p, ctx) => this.logout(ctx),
      sudo: (p, ctx) => this.sudo(p, ctx),
      whoami: (_p, ctx) => this.whoami(ctx),
      user_create: (p, ctx) => this.userCreate(p, ctx),
      user_list: (_p, ctx) => this.userList(ctx),
      user_set_role: (p, ctx) => this.userSetRole(p, ctx),
      user_set_password: (p, ctx) => this.userSetPassword(p, ctx),
      user_disable: (p, ctx) => this.userSetState(p, 'disabled', ctx),
      user_enable: (p, ctx) => this.userSetState(p, 'active', ctx),
      user_delete: (p, ctx) => this.userDelete(p, ctx),
      session_list: (p, ctx) => this.sessionList(p, ctx),
      session_revoke: (p, ctx) => this.sessionRevoke(p, ctx),
    };
  }
}
