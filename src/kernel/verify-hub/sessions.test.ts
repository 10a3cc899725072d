import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { REFRESH_TOKEN_TTL_SEC } from '../../lib/identity/tokens.ts';
import { KrpcError } from '../../lib/krpc/index.ts';
import { type KvStore, KV_LIST_LIMIT, MemoryKv } from './kv.ts';
import { KEYS } from './records.ts';
import { MAX_SESSION_LIFETIME_SEC, SessionStore, hashToken, parseRefreshToken } from './sessions.ts';

function clock() {
  let t = 1_700_000_000_000;
  return { now: () => t, advanceSec: (s: number) => (t += s * 1000) };
}

const live = async () => null;

describe('sessions', () => {
  it('stores only the hash of the refresh token', async () => {
    const kv = new MemoryKv();
    const store = new SessionStore(kv);
    const g = await store.create({ user: 'alice', app: 'control-panel', login: 'password', incarnation: 1, epoch: 0 });
    assert.deepEqual(parseRefreshToken(g.refreshToken), { sid: g.sid });
    const raw = (await kv.get({ key: KEYS.session(g.sid) })).value!;
    assert.ok(!raw.includes(g.refreshToken.split('.')[1]));
    assert.equal(JSON.parse(raw).refresh_hash, hashToken(g.refreshToken));
  });

  it('rotates: each refresh token works once and yields a new one', async () => {
    const c = clock();
    const store = new SessionStore(new MemoryKv(), c.now);
    const g = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    c.advanceSec(60);
    const r1 = await store.refresh(g.refreshToken, live);
    assert.ok(r1.ok);
    assert.notEqual(r1.refreshToken, g.refreshToken);
    assert.equal(r1.sid, g.sid);
    assert.equal(r1.session.refresh_generation, 1);
    assert.equal(r1.session.expires_at, Math.floor(c.now() / 1000) + REFRESH_TOKEN_TTL_SEC);
    const r2 = await store.refresh(r1.refreshToken, live);
    assert.ok(r2.ok);
    assert.equal(r2.session.refresh_generation, 2);
  });

  it('detects reuse of a superseded token and revokes the whole session', async () => {
    const store = new SessionStore(new MemoryKv());
    const g = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    const r1 = await store.refresh(g.refreshToken, live);
    assert.ok(r1.ok);
    const reuse = await store.refresh(g.refreshToken, live);
    assert.equal(reuse.ok, false);
    assert.equal(!reuse.ok && reuse.reason, 'reused');
    assert.equal((await store.get(g.sid))!.value.revoked, true);
    const after = await store.refresh(r1.refreshToken, live);
    assert.equal(!after.ok && after.reason, 'revoked');
  });

  it('does not let a guessed secret for a known sid end the session', async () => {
    const store = new SessionStore(new MemoryKv());
    const g = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    const forged = `${g.sid}.${randomBytes(32).toString('base64url')}`;
    const r = await store.refresh(forged, live);
    assert.equal(!r.ok && r.reason, 'unknown');
    assert.equal((await store.get(g.sid))!.value.revoked, false);
    assert.ok((await store.refresh(g.refreshToken, live)).ok);
    for (const bad of ['', 'no-dot', `${g.sid}.short`, 'a.b.c']) {
      const m = await store.refresh(bad, live);
      assert.equal(!m.ok && m.reason, 'malformed', bad);
    }
  });

  it('lets exactly one of two concurrent refreshes with the same token win; the other is reuse', async () => {
    // Both refreshes read before either writes: only compare-and-swap keeps the second from succeeding.
    const mem = new MemoryKv();
    let gate: Promise<void> | null = null;
    let release = () => {};
    const kv: KvStore = {
      get: async (p) => {
        const r = await mem.get(p);
        if (gate) await gate;
        return r;
      },
      set: (p) => mem.set(p),
      delete: (p) => mem.delete(p),
      list: (p) => mem.list(p),
      exec_tx: (p) => mem.exec_tx(p),
    };
    const store = new SessionStore(kv);
    const g = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    gate = new Promise((r) => (release = r));
    const both = Promise.all([store.refresh(g.refreshToken, live), store.refresh(g.refreshToken, live)]);
    await new Promise((r) => setImmediate(r));
    gate = null;
    release();
    const results = await both;
    assert.equal(results.filter((r) => r.ok).length, 1);
    const loser = results.find((r) => !r.ok)!;
    assert.equal(!loser.ok && loser.reason, 'reused');
  });

  it('expires after the refresh lifetime without use, and at the absolute cap however often refreshed', async () => {
    const c = clock();
    const store = new SessionStore(new MemoryKv(), c.now);
    const idle = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    c.advanceSec(REFRESH_TOKEN_TTL_SEC);
    const r = await store.refresh(idle.refreshToken, live);
    assert.equal(!r.ok && r.reason, 'expired');

    const busy = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    let token = busy.refreshToken;
    let elapsed = 0;
    for (;;) {
      c.advanceSec(6 * 24 * 3600);
      elapsed += 6 * 24 * 3600;
      const next = await store.refresh(token, live);
      if (!next.ok) {
        assert.equal(next.reason, 'expired');
        break;
      }
      assert.ok(next.session.expires_at <= next.session.created_at + MAX_SESSION_LIFETIME_SEC);
      token = next.refreshToken;
    }
    assert.ok(elapsed >= MAX_SESSION_LIFETIME_SEC && elapsed < MAX_SESSION_LIFETIME_SEC + 6 * 24 * 3600);
  });

  it('refuses to refresh for a user who is no longer active, writing nothing', async () => {
    const store = new SessionStore(new MemoryKv());
    const g = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    const r = await store.refresh(g.refreshToken, async () => 'inactive');
    assert.equal(!r.ok && r.reason, 'inactive');
    assert.equal((await store.get(g.sid))!.value.refresh_generation, 0);
  });

  it('revokes one user\'s sessions, sparing the one named', async () => {
    const store = new SessionStore(new MemoryKv());
    const a1 = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    const a2 = await store.create({ user: 'alice', app: 'web', login: 'password', incarnation: 1, epoch: 0 });
    const b = await store.create({ user: 'bob', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    assert.equal(await store.revokeUser('alice', 'test', a1.sid), 1);
    assert.equal((await store.get(a1.sid))!.value.revoked, false);
    assert.equal((await store.get(a2.sid))!.value.revoked, true);
    assert.equal((await store.get(b.sid))!.value.revoked, false);
    assert.equal(await store.revoke('alice:AAAAAAAAAAAAAAAAAAAAAA', 'x'), false);
    assert.equal(await store.revoke('AAAAAAAAAAAAAAAAAAAAAA', 'x'), false);
  });

  it('keeps each user\'s sessions under that user, and lists, revokes and sweeps past a page of 10,000 keys', async () => {
    const c = clock();
    const store = new SessionStore(new MemoryKv(), c.now);
    const many = KV_LIST_LIMIT + 50;
    for (let i = 0; i < many; i++) await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    const bob = await store.create({ user: 'bob', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    assert.match(bob.sid, /^bob:/);
    assert.deepEqual((await store.list('bob')).map((s) => s.sid), [bob.sid]);
    assert.equal((await store.list('alice')).length, many);
    assert.equal((await store.list()).length, many + 1);
    assert.equal(await store.revokeUser('alice', 'test'), many);
    assert.equal((await store.get(bob.sid))!.value.revoked, false);
    c.advanceSec(REFRESH_TOKEN_TTL_SEC);
    assert.equal(await store.sweep(), many + 1);
    assert.deepEqual(await store.list(), []);
  });

  it('sweeps expired and unreadable records, keeping live ones', async () => {
    const c = clock();
    const kv = new MemoryKv();
    const store = new SessionStore(kv, c.now);
    const old = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    c.advanceSec(REFRESH_TOKEN_TTL_SEC - 10);
    const fresh = await store.create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 });
    await kv.set({ key: KEYS.session('alice:AAAAAAAAAAAAAAAAAAAAAA'), value: '{' });
    // A record of the former layout (sessions/<sid>) is well-formed JSON, but no refresh token can reach it any more.
    await kv.set({ key: `${KEYS.sessionsPrefix}AAAAAAAAAAAAAAAAAAAAAA`, value: (await kv.get({ key: KEYS.session(fresh.sid) })).value! });
    c.advanceSec(10);
    assert.equal(await store.sweep(), 3);
    assert.equal(await store.get(old.sid), null);
    assert.ok(await store.get(fresh.sid));
  });

  it('surfaces store errors other than conflicts', async () => {
    const kv = new MemoryKv();
    const broken: KvStore = {
      get: (p) => kv.get(p),
      set: async () => {
        throw new KrpcError('UNAVAILABLE', 'system-config is down');
      },
      delete: (p) => kv.delete(p),
      list: (p) => kv.list(p),
      exec_tx: (p) => kv.exec_tx(p),
    };
    await assert.rejects(new SessionStore(broken).create({ user: 'alice', app: 'cli', login: 'password', incarnation: 1, epoch: 0 }), { code: 'UNAVAILABLE' });
  });
});
