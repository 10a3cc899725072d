// The browser session: sign-in, renewal with the refresh token (once at a time), sign-out, and the tab copied from
// a signed-in one giving its copy up, against a stand-in verify-hub and storage.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { KrpcError } from '../lib/krpc/errors.ts';
import { CLAIM_WINDOW_MS, type HubClient, SESSION_STORAGE_KEY, SessionStore } from './session.ts';

class MemoryStorage implements Storage {
  private readonly m = new Map<string, string>();
  get length() {
    return this.m.size;
  }
  clear() {
    this.m.clear();
  }
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  key(i: number) {
    return [...this.m.keys()][i] ?? null;
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
}

const T0 = 1_800_000_000;
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (sid: string, iat: number, n: number) => `${b64({ alg: 'EdDSA' })}.${b64({ typ: 'session', sub: 'alice', sid, iat, exp: iat + 900, n })}.sig`;

/** A verify-hub that issues 15-minute tokens and rotates refresh tokens, refusing a spent one. */
function fakeHub(opts: { refreshFails?: KrpcError } = {}) {
  let n = 0;
  const live = new Set<string>();
  const calls: string[] = [];
  const issue = (sid: string) => {
    n++;
    const refresh = `${sid}.r${n}`;
    live.add(refresh);
    return { session_token: jwt(sid, T0, n), refresh_token: refresh, expires_at: T0 + 900, refresh_expires_at: T0 + 7 * 86400, user: { name: 'alice', role: 'admin' as const } };
  };
  const hub = (token: string | null): HubClient => ({
    login_nonce: async () => (calls.push('nonce'), { nonce: 'n', expires_at: T0 + 60 }),
    login_password: async (p) => {
      calls.push(`login ${p.username} ${p.app_id}`);
      if (p.password !== 'right') throw new KrpcError('UNAUTHENTICATED', 'wrong user name or password');
      return issue('alice:s1');
    },
    refresh: async (p) => {
      calls.push(`refresh ${p.refresh_token}`);
      await new Promise((r) => setTimeout(r, 5));
      if (opts.refreshFails) throw opts.refreshFails;
      if (!live.delete(p.refresh_token)) throw new KrpcError('UNAUTHENTICATED', 'refresh token reused');
      return issue('alice:s1');
    },
    logout: async () => (calls.push(`logout ${token === null ? 'anonymous' : 'with token'}`), { sid: 'alice:s1' }),
  });
  return { hub, calls };
}

const channels: BroadcastChannel[] = [];
function channel(): BroadcastChannel {
  const c = new BroadcastChannel('session-test');
  channels.push(c);
  return c;
}
afterEach(() => {
  for (const c of channels.splice(0)) c.close();
});

describe('SessionStore', () => {
  it('signs in as the control panel, keeps the token pair (never the password) and renews it before it expires', async () => {
    let now = 1_000_000;
    const storage = new MemoryStorage();
    const { hub, calls } = fakeHub();
    const s = new SessionStore({ storage, hub, now: () => now, channel: null });
    await assert.rejects(s.login('alice', 'wrong'), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
    assert.equal(s.get(), null);
    const session = await s.login('alice', 'right');
    assert.deepEqual(calls.slice(-2), ['nonce', 'login alice control-panel']);
    assert.equal(session.sid, 'alice:s1');
    assert.equal(session.renewAt, now + 900_000 - 60_000, 'a minute before the token\'s own lifetime runs out, by the local clock');
    const stored = storage.getItem(SESSION_STORAGE_KEY)!;
    assert.ok(stored.includes(session.refresh) && !stored.includes('right'));

    assert.equal(await s.token(), session.token);
    now = session.renewAt;
    const [a, b] = await Promise.all([s.token(), s.token()]);
    assert.equal(a, b);
    assert.notEqual(a, session.token);
    assert.deepEqual(calls.filter((c) => c.startsWith('refresh')), [`refresh ${session.refresh}`], 'one trade for concurrent callers');
    assert.equal(JSON.parse(storage.getItem(SESSION_STORAGE_KEY)!).token, a);
  });

  it('ends the session when verify-hub refuses the refresh token, and keeps it when verify-hub is unreachable', async () => {
    let now = 0;
    const refused = new SessionStore({ storage: new MemoryStorage(), hub: fakeHub({ refreshFails: new KrpcError('UNAUTHENTICATED', 'revoked') }).hub, now: () => now, channel: null });
    await refused.login('alice', 'right');
    now = refused.get()!.renewAt;
    assert.equal(await refused.token(), null);
    assert.equal(refused.get(), null);
    assert.equal(refused.endReason(), 'expired');

    now = 0;
    const offline = new SessionStore({ storage: new MemoryStorage(), hub: fakeHub({ refreshFails: new KrpcError('UNAVAILABLE', 'cannot reach') }).hub, now: () => now, channel: null });
    await offline.login('alice', 'right');
    now = offline.get()!.renewAt;
    await assert.rejects(offline.token(), (e: KrpcError) => e.code === 'UNAVAILABLE');
    assert.ok(offline.get(), 'kept for the next try');
  });

  it('signs out at verify-hub with the session\'s token, and locally even when verify-hub cannot be reached', async () => {
    const storage = new MemoryStorage();
    const { hub, calls } = fakeHub();
    const s = new SessionStore({ storage, hub, channel: null });
    await s.login('alice', 'right');
    await s.logout();
    assert.equal(calls.at(-1), 'logout with token');
    assert.equal(s.get(), null);
    assert.equal(s.endReason(), 'logout');
    assert.equal(storage.getItem(SESSION_STORAGE_KEY), null);

    const down = new SessionStore({
      storage: new MemoryStorage(),
      hub: (t) => ({ ...hub(t), logout: async () => Promise.reject(new KrpcError('UNAVAILABLE', 'down')) }),
      channel: null,
    });
    await down.login('alice', 'right');
    await down.logout();
    assert.equal(down.get(), null);
  });

  it('picks a stored session up after a reload, and drops a garbled or finished one', async () => {
    const storage = new MemoryStorage();
    const { hub } = fakeHub();
    await new SessionStore({ storage, hub, channel: null }).login('alice', 'right');
    assert.equal(new SessionStore({ storage, hub, channel: null }).get()?.sid, 'alice:s1');
    assert.equal(new SessionStore({ storage, hub, now: () => Date.now() + 8 * 86400_000, channel: null }).get(), null);
    assert.equal(storage.getItem(SESSION_STORAGE_KEY), null);
    storage.setItem(SESSION_STORAGE_KEY, '{"token":1}');
    assert.equal(new SessionStore({ storage, hub, channel: null }).get(), null);
  });

  it('makes a tab copied from a signed-in one give its copy up, so the two never spend one refresh token', async () => {
    const { hub, calls } = fakeHub();
    const original = new MemoryStorage();
    const first = new SessionStore({ storage: original, hub, channel: channel() });
    await first.login('alice', 'right');
    const copied = new MemoryStorage();
    copied.setItem(SESSION_STORAGE_KEY, original.getItem(SESSION_STORAGE_KEY)!);
    const second = new SessionStore({ storage: copied, hub, channel: channel() });
    assert.ok(second.get(), 'the copy starts with the session');
    await new Promise((r) => setTimeout(r, CLAIM_WINDOW_MS + 50));
    assert.equal(second.get(), null);
    assert.equal(second.endReason(), 'copied');
    assert.equal(copied.getItem(SESSION_STORAGE_KEY), null);
    assert.equal(first.get()?.sid, 'alice:s1', 'the original keeps it');
    assert.equal(await second.refresh(), null);
    assert.ok(!calls.some((c) => c.startsWith('refresh') || c.startsWith('logout')), 'nothing was spent or revoked');
  });
});
