// The time-dependent rules of verify-hub (lockout expiry, nonce expiry, rate-limit refill), on the in-memory store
// with a clock the test moves, so nothing waits.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../lib/identity/keys.ts';
import { signJwt } from '../../lib/identity/jwt.ts';
import { createTokenVerifier } from '../../lib/identity/tokens.ts';
import { type CallContext, KrpcError } from '../../lib/krpc/index.ts';
import { type AuditEvent, LOCKOUT, NONCE_TTL_MS, VerifyHub } from './hub.ts';
import { MemoryKv } from './kv.ts';
import { hashPassword } from './password.ts';

const OWNER_PW = 'Owner-pass-2024';

async function setup(opts: { ownerPassword?: boolean } = {}) {
  let t = Date.now();
  const vh = generateKeyPair();
  const owner = generateKeyPair();
  const events: AuditEvent[] = [];
  const hub = new VerifyHub({
    kv: new MemoryKv(),
    signingKey: vh.privateKey,
    owner: { name: 'alice', key: owner.publicKey },
    deviceKey: async () => undefined,
    verifyToken: createTokenVerifier(() => ({ verifyHubKey: vh.publicKey, deviceKey: () => undefined })),
    check: () => true,
    audit: (e) => void events.push(e),
    now: () => t,
  });
  await hub.ensureOwner(opts.ownerPassword === false ? null : await hashPassword(OWNER_PW));
  const h = hub.handlers();
  const ctx = (ip = '10.0.0.1'): CallContext => ({ principal: null, token: null, trace: 't', seq: 0, remoteAddress: ip });
  const login = async (username: string, password: string, ip?: string) => {
    const { nonce } = h.login_nonce({}, ctx(ip)) as { nonce: string };
    return h.login_password({ username, password, nonce, app_id: 'cli' }, ctx(ip));
  };
  return { hub, h, ctx, login, owner, events, advance: (ms: number) => (t += ms) };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
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
    const { nonce } = s.h.login_nonce({}, s.ctx()) as { nonce: string };
    s.advance(NONCE_TTL_MS);
    const r = s.h.login_password({ username: 'alice', password: OWNER_PW, nonce, app_id: 'cli' }, s.ctx());
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
    const { nonce } = s.h.login_nonce({}, s.ctx()) as { nonce: string };
    const jwt = await signJwt({ typ: 'login', sub: 'alice', nonce }, s.owner.privateKey, { expiresInSec: 60 });
    const t = await s.h.login_jwt({ jwt, app_id: 'cli' }, s.ctx());
    const principal = await s.hub.authenticate(t.session_token);
    await s.h.user_set_password({ name: 'alice', new_password: 'First-pass-4711' }, { ...s.ctx(), principal });
    assert.equal(await code(s.login('alice', 'First-pass-4711')), 'ok');
    // From now on the old password is needed.
    const again = s.h.user_set_password({ name: 'alice', new_password: 'Second-pass-4711' }, { ...s.ctx(), principal });
    assert.equal(await code(Promise.resolve(again)), 'INVALID_PARAMS');
  });
});
