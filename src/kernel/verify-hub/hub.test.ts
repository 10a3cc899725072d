// The time-dependent rules of verify-hub (lockout expiry, nonce expiry, rate-limit refill), on the in-memory store
// with a clock the test moves, so nothing waits.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../lib/identity/keys.ts';
import { signJwt } from '../../lib/identity/jwt.ts';
import { createTokenVerifier } from '../../lib/identity/tokens.ts';
import { type CallContext, KrpcError } from '../../lib/krpc/index.ts';
import { type AuditEvent, LOCKOUT, NONCE_TTL_MS, VerifyHub } from './hub.ts';
import { type KvStore, MemoryKv } from './kv.ts';
import { hashPassword } from './password.ts';
import { KEYS } from './records.ts';

const OWNER_PW = 'Owner-pass-2024';

async function setup(opts: { ownerPassword?: boolean; kv?: KvStore } = {}) {
  let t = Date.now();
  const vh = generateKeyPair();
  const owner = generateKeyPair();
  const events: AuditEvent[] = [];
  const kv = opts.kv ?? new MemoryKv();
  const hub = new VerifyHub({
    kv,
    signingKey: vh.privateKey,
    owner: { name: 'alice', key: owner.publicKey },
    device: async () => undefined,
    verifyToken: createTokenVerifier(() => ({ verifyHubKey: vh.publicKey, device: () => undefined })),
    check: () => true,
    audit: (e) => void events.push(e),
    now: () => t,
  });
  await hub.ensureOwner(opts.ownerPassword === false ? null : await hashPassword(OWNER_PW));
  const h = hub.handlers();
  const ctx = (ip = '10.0.0.1'): CallContext => ({ principal: null, token: null, trace: 't', seq: 0, remoteAddress: ip });
  const login = async (username: string, password: string, ip?: string, app = 'buckyos-cli') => {
    const { nonce } = await h.login_nonce({}, ctx(ip));
    return h.login_password({ username, password, nonce, app_id: app }, ctx(ip));
  };
  /** The context of a call made with `token`. */
  const as = async (token: string, ip?: string): Promise<CallContext> => ({ ...ctx(ip), token, principal: await hub.authenticate(token) });
  return { hub, h, kv, ctx, login, as, owner, events, advance: (ms: number) => (t += ms) };
}

async function code(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof KrpcError);
    return e.code;
  }
}

describe('verify-hub rules over time', () => {
  it('lifts a lockout after 15 minutes and counts afresh', async () => {
    const s = await setup();
    for (let i = 0; i < LOCKOUT.maxFailures; i++) assert.equal(await code(s.login('alice', 'Wrong-password-1', `10.0.0.${i}`)), 'UNAUTHENTICATED');
    assert.equal(await code(s.login('alice', OWNER_PW, '10.0.1.1')), 'RATE_LIMITED');
    s.advance(LOCKOUT.lockMs - 1000);
    assert.equal(await code(s.login('alice', OWNER_PW, '10.0.1.2')), 'RATE_LIMITED');
    s.advance(1000);
    assert.equal(await code(s.login('alice', OWNER_PW, '10.0.1.3')), 'ok');
    // Success cleared the count: four more failures do not lock.
    for (let i = 0; i < LOCKOUT.maxFailures - 1; i++) await code(s.login('alice', 'Wrong-password-1', `10.0.2.${i}`));
    s.advance(60_000);
    assert.equal(await code(s.login('alice', OWNER_PW, '10.0.3.1')), 'ok');
    assert.ok(s.events.some((e) => e.type === 'login_failed' && e.reason === 'locked'));
  });

  it('refuses a nonce after its 60 seconds', async () => {
    const s = await setup();
    const { nonce } = await s.h.login_nonce({}, s.ctx());
    s.advance(NONCE_TTL_MS);
    const r = s.h.login_password({ username: 'alice', password: OWNER_PW, nonce, app_id: 'buckyos-cli' }, s.ctx());
    assert.equal(await code(Promise.resolve(r)), 'UNAUTHENTICATED');
  });

  it('refills the per-address budget with time', async () => {
    const s = await setup();
    for (let i = 0; i < 10; i++) await code(s.login(`u${i}x`, 'Wrong-password-1'));
    assert.equal(await code(s.login('alice', OWNER_PW)), 'RATE_LIMITED');
    assert.equal(await code(s.login('alice', OWNER_PW, '10.9.9.9')), 'ok');
    s.advance(6_000);
    assert.equal(await code(s.login('alice', OWNER_PW)), 'ok');
  });

  it('limits attempts per user name across addresses', async () => {
    const s = await setup();
    for (let i = 0; i < 10; i++) assert.equal(await code(s.login('alice', OWNER_PW, `10.1.0.${i}`)), 'ok');
    await assert.rejects(s.login('alice', OWNER_PW, '10.1.1.1'), (e: KrpcError) => e.code === 'RATE_LIMITED' && /for this account/.test(e.message));
  });

  it('lets an owner without a password log in with the owner key and set a first one', async () => {
    const s = await setup({ ownerPassword: false });
    assert.equal(await code(s.login('alice', OWNER_PW)), 'UNAUTHENTICATED');
    const { nonce } = await s.h.login_nonce({}, s.ctx());
    const jwt = await signJwt({ typ: 'login', sub: 'alice', nonce }, s.owner.privateKey, { expiresInSec: 60 });
    const t = await s.h.login_jwt({ jwt, app_id: 'buckyos-cli' }, s.ctx());
    const principal = await s.hub.authenticate(t.session_token);
    await s.h.user_set_password({ name: 'alice', new_password: 'First-pass-4711' }, { ...s.ctx(), principal });
    assert.equal(await code(s.login('alice', 'First-pass-4711')), 'ok');
    // From now on the old password is needed.
    const again = s.h.user_set_password({ name: 'alice', new_password: 'Second-pass-4711' }, { ...s.ctx(), principal });
    assert.equal(await code(Promise.resolve(again)), 'INVALID_PARAMS');
  });

  it('ends every session of a user on password change, disable and re-creation, though no listing reaches them', async () => {
    // A store whose listings stop after one key, as system-config's stop after 10,000: revocation must not depend
    // on finding each session record.
    const mem = new MemoryKv();
    const kv: KvStore = {
      get: (p) => mem.get(p),
      set: (p) => mem.set(p),
      delete: (p) => mem.delete(p),
      exec_tx: (p) => mem.exec_tx(p),
      list: (p) => mem.list({ ...p, limit: 1 }),
    };
    const s = await setup({ kv });
    const admin = async (ip: string) => {
      const t = await s.login('alice', OWNER_PW, ip);
      const { sudo_token } = await s.h.sudo({ password: OWNER_PW }, await s.as(t.session_token, ip));
      return s.as(sudo_token, ip);
    };
    const ended = async (t: { session_token: string; refresh_token: string }) =>
      [await code(s.hub.authenticate(t.session_token)), await code(() => s.h.refresh({ refresh_token: t.refresh_token }, s.ctx()))];
    const over = ['UNAUTHENTICATED', 'UNAUTHENTICATED'];

    await s.h.user_create({ name: 'bob', password: 'Blue-sky-4711', role: 'user' }, await admin('10.0.1.1'));
    const [b1, b2, b3] = [await s.login('bob', 'Blue-sky-4711', '10.0.2.1'), await s.login('bob', 'Blue-sky-4711', '10.0.2.2'), await s.login('bob', 'Blue-sky-4711', '10.0.2.3')];
    await s.h.user_set_password({ name: 'bob', old_password: 'Blue-sky-4711', new_password: 'Blue-sky-4712' }, await s.as(b1.session_token));
    assert.deepEqual(await ended(b2), over);
    assert.deepEqual(await ended(b3), over);
    const b1next = await s.h.refresh({ refresh_token: b1.refresh_token }, s.ctx());
    assert.equal(await code(s.hub.authenticate(b1next.session_token)), 'ok');

    await s.h.user_disable({ name: 'bob' }, await admin('10.0.1.2'));
    await s.h.user_enable({ name: 'bob' }, await admin('10.0.1.3'));
    assert.deepEqual(await ended(b1next), over);

    // A session record the deletion did not reach does not carry over to a new account of the same name.
    const b4 = await s.login('bob', 'Blue-sky-4712', '10.0.2.4');
    const b4next = await s.h.refresh({ refresh_token: b4.refresh_token }, s.ctx());
    assert.equal(await code(s.hub.authenticate(b4next.session_token)), 'ok');
    const sid = b4.refresh_token.split('.')[0]!;
    const leftover = (await mem.get({ key: KEYS.session(sid) })).value!;
    await s.h.user_delete({ name: 'bob' }, await admin('10.0.1.4'));
    await s.h.user_create({ name: 'bob', password: 'Blue-sky-4711', role: 'user' }, await admin('10.0.1.5'));
    await mem.set({ key: KEYS.session(sid), value: leftover });
    assert.deepEqual(await ended(b4next), over);
    assert.equal(await code(s.login('bob', 'Blue-sky-4711', '10.0.2.5')), 'ok');
  });

  it('keeps logins open to everyone while one address floods login_nonce', async () => {
    const s = await setup();
    const early = await s.h.login_nonce({}, s.ctx('10.0.0.1'));
    const answers = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const c = await code(() => s.h.login_nonce({}, s.ctx('10.6.6.6')));
      answers.set(c, (answers.get(c) ?? 0) + 1);
    }
    assert.ok((answers.get('RATE_LIMITED') ?? 0) > 19_000, JSON.stringify([...answers]));
    const r = s.h.login_password({ username: 'alice', password: OWNER_PW, nonce: early.nonce, app_id: 'buckyos-cli' }, s.ctx('10.0.0.1'));
    assert.equal(await code(Promise.resolve(r)), 'ok');
    assert.equal(await code(s.login('alice', OWNER_PW, '10.0.0.2')), 'ok');
  });

  it('logs in only with the trusted UI or an app installed for the user, never as a system service or role', async () => {
    const s = await setup();
    let n = 0;
    const ip = () => `10.0.3.${n++}`;
    const withKey = async (app: string) => {
      const { nonce } = await s.h.login_nonce({}, s.ctx());
      const jwt = await signJwt({ typ: 'login', sub: 'alice', nonce }, s.owner.privateKey, { expiresInSec: 60 });
      return s.h.login_jwt({ jwt, app_id: app }, s.ctx(ip()));
    };
    for (const app of ['system-config', 'verify-hub', 'klog', 'kernel', 'frame', 'trusted-ui', 'app', 'admin']) {
      await assert.rejects(s.login('alice', OWNER_PW, ip(), app), (e: KrpcError) => e.code === 'INVALID_PARAMS' && /not an app/.test(e.message), app);
      await assert.rejects(withKey(app), (e: KrpcError) => e.code === 'INVALID_PARAMS', app);
    }
    await assert.rejects(s.login('alice', OWNER_PW, ip(), 'notes'), (e: KrpcError) => e.code === 'PERMISSION_DENIED' && /"notes" is not installed for user "alice"/.test(e.message));
    await assert.rejects(withKey('notes'), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    await s.kv.set({ key: 'users/alice/apps/notes/spec', value: '{}' });
    for (const app of ['notes', 'control-panel', 'buckyos-cli']) {
      assert.equal((await s.hub.authenticate((await s.login('alice', OWNER_PW, ip(), app)).session_token)).appId, app);
      assert.equal((await s.hub.authenticate((await withKey(app)).session_token)).appId, app);
    }
  });
});
